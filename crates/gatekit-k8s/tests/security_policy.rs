//! SecurityPolicy and SecurityOverride translation: precedence, conflicts, overrides
//! listed before a rule's own policy, refused and unresolvable policies (listed, no
//! spec, status says why), and the specs read from Secrets and Services.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "support/status.rs"]
mod support;

use std::time::Duration;

use gatekit_core::access::KeyDigest;
use gatekit_k8s::Translation;
use gatekit_k8s::translate::{
    AccessSpec, ApiKeySpec, CredentialFrom, OidcSpec, OidcStringMatch, SameSite,
};
use support::run;

const BASE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: apps }
spec:
  gatewayClassName: gatekit
  listeners:
  - { name: web, port: 80, protocol: HTTP }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: shop, namespace: apps }
spec:
  parentRefs: [{ name: gw }]
  rules:
  - name: admin
    matches: [{ path: { type: PathPrefix, value: /admin } }]
    backendRefs: [{ name: app, port: 8080 }]
  - name: public
    backendRefs: [{ name: app, port: 8080 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: blog, namespace: apps }
spec:
  parentRefs: [{ name: gw }]
  hostnames: [blog.test]
  rules:
  - backendRefs: [{ name: app, port: 8080 }]
---
apiVersion: v1
kind: Secret
metadata: { name: keys-a, namespace: apps }
stringData: { alice: key-a-1, bob: key-b-1 }
---
apiVersion: v1
kind: Secret
metadata: { name: keys-b, namespace: apps }
stringData: { alice: key-a-2 }
---
apiVersion: v1
kind: Secret
metadata: { name: users, namespace: apps }
stringData: { .htpasswd: "carol:$2y$05$abcdefghijklmnopqrstuv" }
"#;

const JWKS: &str = r#"{\"keys\":[]}"#;

fn policy(name: &str, created: &str, target: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: SecurityPolicy\n\
         metadata: {{ name: {name}, namespace: apps, creationTimestamp: \"{created}\" }}\n\
         spec:\n  targetRefs: [{target}]\n{spec}"
    )
}

fn override_(name: &str, created: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: gatekit.io/v1alpha1\nkind: SecurityOverride\n\
         metadata: {{ name: {name}, namespace: apps, creationTimestamp: \"{created}\" }}\n\
         spec:\n  targetRefs: [{{ kind: Gateway, name: gw }}]\n{spec}"
    )
}

const GATEWAY: &str = "{ group: gateway.networking.k8s.io, kind: Gateway, name: gw }";
const SHOP: &str = "{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: shop }";
const ADMIN: &str =
    "{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: shop, sectionName: admin }";
const BASIC: &str = "  basicAuth: { users: { name: users } }\n";
const API_KEYS: &str = "  apiKeyAuth:\n    credentialRefs: [{ name: keys-a }, { name: keys-b }]\n    extractFrom: [{ headers: [x-api-key] }]\n    forwardClientIDHeader: x-client\n";

fn jwt() -> String {
    format!(
        "  jwt:\n    providers:\n    - name: idp\n      issuer: https://idp.test\n      localJWKS: {{ type: Inline, inline: \"{JWKS}\" }}\n"
    )
}

/// The access list of the rule of route `route` whose name is `rule` (`None`: the
/// route's first rule).
fn access(t: &Translation, route: &str, rule: Option<&str>) -> Vec<String> {
    let r = t
        .routes_for_port(80)
        .iter()
        .find(|r| r.id.name() == route)
        .unwrap();
    let rule = match rule {
        Some(n) => r
            .rules
            .iter()
            .find(|x| x.name.as_deref() == Some(n))
            .unwrap(),
        None => &r.rules[0],
    };
    rule.policy.access.clone()
}

fn accepted(t: &Translation, kind: &str, name: &str) -> (bool, String, String) {
    let s = t.status(kind, Some("apps"), name).unwrap();
    let c = s.condition("Accepted").unwrap();
    (c.is_true(), c.reason().to_owned(), c.message().to_owned())
}

#[test]
fn the_most_specific_policy_wins_a_rule_whole() {
    let yaml = BASE.to_owned()
        + &policy("gw-wide", "2024-01-01T00:00:00Z", GATEWAY, BASIC)
        + &policy("shop", "2024-01-02T00:00:00Z", SHOP, API_KEYS)
        + &policy("admin", "2024-01-03T00:00:00Z", ADMIN, &jwt());
    let t = run(&yaml);
    assert_eq!(
        access(&t, "shop", Some("admin")),
        ["SecurityPolicy/apps/admin/jwt"]
    );
    assert_eq!(
        access(&t, "shop", Some("public")),
        ["SecurityPolicy/apps/shop/apiKeyAuth"]
    );
    assert_eq!(
        access(&t, "blog", None),
        ["SecurityPolicy/apps/gw-wide/basicAuth"]
    );
    for name in ["gw-wide", "shop", "admin"] {
        assert!(accepted(&t, "SecurityPolicy", name).0, "{name}");
    }
    let p = t.access_policies();
    assert!(matches!(
        p["SecurityPolicy/apps/admin/jwt"].spec().map(|s| &**s),
        Some(AccessSpec::Jwt(_))
    ));
    assert!(matches!(
        p["SecurityPolicy/apps/gw-wide/basicAuth"].spec().map(|s| &**s),
        Some(AccessSpec::Basic(b)) if b.users() == 1
    ));
}

#[test]
fn of_two_policies_on_one_target_the_older_applies_and_the_newer_is_conflicted() {
    let yaml = BASE.to_owned()
        + &policy("late", "2024-01-05T00:00:00Z", SHOP, BASIC)
        + &policy("early", "2024-01-01T00:00:00Z", SHOP, API_KEYS);
    let t = run(&yaml);
    assert_eq!(
        access(&t, "shop", Some("public")),
        ["SecurityPolicy/apps/early/apiKeyAuth"]
    );
    let (ok, reason, message) = accepted(&t, "SecurityPolicy", "late");
    assert!(!ok);
    assert_eq!(reason, "Conflicted");
    assert!(message.contains("apps/early"), "{message}");
}

#[test]
fn overrides_come_first_oldest_first_and_a_route_policy_only_adds() {
    let yaml = BASE.to_owned()
        + &override_("platform-new", "2024-01-02T00:00:00Z", BASIC)
        + &override_("platform-old", "2024-01-01T00:00:00Z", &jwt())
        + &policy("shop", "2024-01-03T00:00:00Z", SHOP, API_KEYS);
    let t = run(&yaml);
    assert_eq!(
        access(&t, "shop", Some("public")),
        [
            "SecurityOverride/apps/platform-old/jwt",
            "SecurityOverride/apps/platform-new/basicAuth",
            "SecurityPolicy/apps/shop/apiKeyAuth",
        ]
    );
    // A route without a policy of its own still gets the overrides.
    assert_eq!(
        access(&t, "blog", None),
        [
            "SecurityOverride/apps/platform-old/jwt",
            "SecurityOverride/apps/platform-new/basicAuth",
        ]
    );
    let (ok, _, message) = accepted(&t, "SecurityPolicy", "shop");
    assert!(ok);
    assert!(
        message.contains("SecurityOverride apps/platform-new")
            || message.contains("apps/platform-old, apps/platform-new"),
        "{message}"
    );
    assert!(accepted(&t, "SecurityOverride", "platform-old").0);
}

#[test]
fn an_oidc_field_gatekit_does_not_implement_is_refused_by_name_and_its_rules_stay_guarded() {
    let yaml = BASE.to_owned()
        + OIDC_SECRET
        + &policy(
            "login",
            "2024-01-01T00:00:00Z",
            SHOP,
            "  oidc:\n    provider: { issuer: https://idp.test, backendSettings: { retry: { numRetries: 2 } } }\n    \
             clientID: web\n    clientSecret: { name: oidc-client }\n    \
             forwardIDToken: { header: x-id-token }\n    disableTokenEncryption: true\n",
        );
    let t = run(&yaml);
    assert_eq!(
        access(&t, "shop", Some("admin")),
        ["SecurityPolicy/apps/login"]
    );
    let entry = &t.access_policies()["SecurityPolicy/apps/login"];
    assert!(entry.spec().is_none());
    let (ok, reason, message) = accepted(&t, "SecurityPolicy", "login");
    assert!(!ok);
    assert_eq!(reason, "Unsupported");
    for field in [
        "oidc.forwardIDToken",
        "oidc.provider.backendSettings",
        "oidc.disableTokenEncryption",
    ] {
        assert!(message.contains(field), "{field} not in {message}");
    }
    assert!(!message.contains(CLIENT_SECRET), "{message}");
    // Another route is untouched.
    assert!(access(&t, "blog", None).is_empty());
}

#[test]
fn a_missing_secret_lists_the_name_without_a_spec_and_says_why() {
    let yaml = BASE.to_owned()
        + &policy(
            "broken",
            "2024-01-01T00:00:00Z",
            SHOP,
            "  basicAuth: { users: { name: missing } }\n",
        );
    let t = run(&yaml);
    assert_eq!(
        access(&t, "shop", Some("public")),
        ["SecurityPolicy/apps/broken/basicAuth"]
    );
    let entry = &t.access_policies()["SecurityPolicy/apps/broken/basicAuth"];
    assert!(entry.spec().is_none());
    assert!(
        entry
            .problem()
            .unwrap()
            .contains("Secret apps/missing not found")
    );
    let (ok, reason, message) = accepted(&t, "SecurityPolicy", "broken");
    assert!(!ok);
    assert_eq!(reason, "Invalid");
    assert!(message.contains("spec.basicAuth.users"), "{message}");
    assert!(
        t.errors()
            .iter()
            .any(|e| e.reason().contains("Secret apps/missing not found"))
    );
}

#[test]
fn api_keys_come_from_every_secret_and_stay_out_of_debug_output() {
    let yaml = BASE.to_owned() + &policy("shop", "2024-01-01T00:00:00Z", SHOP, API_KEYS);
    let t = run(&yaml);
    let entry = &t.access_policies()["SecurityPolicy/apps/shop/apiKeyAuth"];
    let Some(AccessSpec::ApiKey(spec)) = entry.spec().map(|s| &**s) else {
        panic!("{entry:?}")
    };
    let alice = spec
        .consumers
        .iter()
        .find(|c| c.client_id == "alice")
        .unwrap();
    assert_eq!(
        alice.keys,
        [KeyDigest::of(b"key-a-1"), KeyDigest::of(b"key-a-2")]
    );
    assert_eq!(spec.forward_header.as_deref(), Some("x-client"));
    let debug = format!("{t:?}");
    for key in ["key-a-1", "key-a-2", "key-b-1", "abcdefghijklmnop"] {
        assert!(!debug.contains(key), "{key} in debug output");
    }
}

/// Everything an [`ApiKeySpec`] holds, as bytes: client ids, key digests, sources,
/// the forwarded header.
fn held_bytes(spec: &ApiKeySpec) -> Vec<u8> {
    let mut out = Vec::new();
    for c in &spec.consumers {
        out.extend_from_slice(c.client_id.as_bytes());
        for k in &c.keys {
            out.extend_from_slice(k.as_bytes());
        }
    }
    for from in &spec.sources {
        match from {
            CredentialFrom::Header { name, prefix } => {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(prefix.as_bytes());
            }
            CredentialFrom::Query(p) | CredentialFrom::Cookie(p) => {
                out.extend_from_slice(p.as_bytes());
            }
        }
    }
    out.extend_from_slice(
        spec.forward_header
            .as_deref()
            .unwrap_or_default()
            .as_bytes(),
    );
    out
}

/// Keys become digests as the Secret is read, from `data` (base64) and `stringData`
/// alike: the translated spec holds no key, in its bytes or its `Debug` output, and a
/// key the same client has in two Secrets is held once.
#[test]
fn api_keys_are_held_only_as_digests_from_the_moment_the_secret_is_read() {
    const KEYS: &str = "  apiKeyAuth:\n    credentialRefs: [{ name: keys-a }, { name: keys-b }, { name: keys-c }]\n    extractFrom: [{ headers: [x-api-key], params: [api_key] }]\n";
    // keys-c: carol's key in `data` (base64 of `key-c-data-1`), alice's again.
    let yaml = BASE.to_owned()
        + "---\napiVersion: v1\nkind: Secret\nmetadata: { name: keys-c, namespace: apps }\n\
           data: { carol: a2V5LWMtZGF0YS0x }\nstringData: { alice: key-a-1 }\n"
        + &policy("shop", "2024-01-01T00:00:00Z", SHOP, KEYS);
    let t = run(&yaml);
    let entry = &t.access_policies()["SecurityPolicy/apps/shop/apiKeyAuth"];
    let Some(AccessSpec::ApiKey(spec)) = entry.spec().map(|s| &**s) else {
        panic!("{entry:?}")
    };
    let keys = |id: &str| {
        spec.consumers
            .iter()
            .find(|c| c.client_id == id)
            .unwrap()
            .keys
            .clone()
    };
    assert_eq!(
        keys("alice"),
        [KeyDigest::of(b"key-a-1"), KeyDigest::of(b"key-a-2")]
    );
    assert_eq!(keys("carol"), [KeyDigest::of(b"key-c-data-1")]);
    assert_eq!(keys("bob"), [KeyDigest::of(b"key-b-1")]);

    let held = held_bytes(spec);
    let shown = [format!("{spec:?}"), format!("{entry:?}"), format!("{t:?}")];
    for key in ["key-a-1", "key-a-2", "key-b-1", "key-c-data-1"] {
        assert!(
            !held.windows(key.len()).any(|w| w == key.as_bytes()),
            "{key} held by the spec"
        );
        for shown in &shown {
            assert!(!shown.contains(key), "{key} in {shown}");
        }
        // Not the digest either, in hex or as a byte array.
        let d = KeyDigest::of(key.as_bytes());
        let hex: String = d.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let array = format!("{:?}", d.as_bytes());
        for shown in &shown {
            assert!(!shown.contains(&hex[..16]), "digest of {key} in {shown}");
            assert!(!shown.contains(&array[1..16]), "digest of {key} in {shown}");
        }
    }
}

/// A Secret value that is not text is refused, naming the Secret and the entry (and
/// no value); the rule fails closed.
#[test]
fn an_api_key_secret_that_is_not_text_is_refused() {
    const KEYS: &str = "  apiKeyAuth:\n    credentialRefs: [{ name: keys-bin }]\n    extractFrom: [{ headers: [x-api-key] }]\n";
    // base64 of the bytes ff fe 6b.
    let yaml = BASE.to_owned()
        + "---\napiVersion: v1\nkind: Secret\nmetadata: { name: keys-bin, namespace: apps }\n\
           data: { dave: //5r }\n"
        + &policy("shop", "2024-01-01T00:00:00Z", SHOP, KEYS);
    let t = run(&yaml);
    let entry = &t.access_policies()["SecurityPolicy/apps/shop/apiKeyAuth"];
    assert!(entry.spec().is_none(), "{entry:?}");
    let problem = entry.problem().unwrap_or_default();
    assert!(
        problem.contains("Secret apps/keys-bin: data \"dave\" is not UTF-8"),
        "{problem}"
    );
}

#[test]
fn an_ext_auth_backend_becomes_an_upstream() {
    let yaml = BASE.to_owned()
        + "---\napiVersion: v1\nkind: Service\nmetadata: { name: authz, namespace: apps }\n\
           spec: { ports: [{ port: 9000 }] }\n"
        + &policy(
            "ext",
            "2024-01-01T00:00:00Z",
            SHOP,
            "  extAuth:\n    http: { backendRefs: [{ name: authz, port: 9000 }], path: /check }\n    timeout: 2s\n",
        );
    let t = run(&yaml);
    let entry = &t.access_policies()["SecurityPolicy/apps/ext/extAuth"];
    let Some(AccessSpec::ExtAuth(spec)) = entry.spec().map(|s| &**s) else {
        panic!("{entry:?}")
    };
    assert_eq!(spec.upstream, "apps/authz:9000");
    assert_eq!(spec.timeout, Some(std::time::Duration::from_secs(2)));
    assert!(t.upstreams().contains_key("apps/authz:9000"));
}

#[test]
fn an_external_auth_filter_becomes_the_rules_last_access_policy() {
    let yaml = BASE.to_owned()
        + "---\napiVersion: v1\nkind: Service\nmetadata: { name: authz, namespace: apps }\n\
           spec: { ports: [{ port: 9000 }] }\n\
           ---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
           metadata: { name: checked, namespace: apps }\n\
           spec:\n  parentRefs: [{ name: gw }]\n  hostnames: [checked.test]\n  rules:\n  \
           - filters:\n    - type: ExternalAuth\n      externalAuth:\n        protocol: HTTP\n        \
           backendRef: { name: authz, port: 9000 }\n        http: { path: /check, allowedResponseHeaders: [x-user] }\n    \
           backendRefs: [{ name: app, port: 8080 }]\n"
        + &override_("platform", "2024-01-01T00:00:00Z", BASIC);
    let t = run(&yaml);
    let name = "HTTPRoute/apps/checked/rules[0]/externalAuth";
    assert_eq!(
        access(&t, "checked", None),
        ["SecurityOverride/apps/platform/basicAuth", name]
    );
    let entry = &t.access_policies()[name];
    let Some(AccessSpec::ExtAuth(spec)) = entry.spec().map(|s| &**s) else {
        panic!("{entry:?}")
    };
    assert_eq!(spec.upstream, "apps/authz:9000");
    assert!(t.upstreams().contains_key("apps/authz:9000"));
    let route = t.status("HTTPRoute", Some("apps"), "checked").unwrap();
    let accepted = route.parents()[0].condition("Accepted").unwrap();
    assert!(accepted.is_true(), "{accepted:?}");
}

/// The CORS filter of the rule of route `route` named `rule` (`None`: the first).
fn cors_of(
    t: &Translation,
    route: &str,
    rule: Option<&str>,
) -> Option<gatekit_core::route::CorsPolicy> {
    let r = t
        .routes_for_port(80)
        .iter()
        .find(|r| r.id.name() == route)
        .unwrap();
    let rule = match rule {
        Some(n) => r
            .rules
            .iter()
            .find(|x| x.name.as_deref() == Some(n))
            .unwrap(),
        None => &r.rules[0],
    };
    let mut found = rule.filters.iter().filter_map(|f| match f {
        gatekit_core::route::Filter::Cors(c) => Some(c.clone()),
        _ => None,
    });
    let first = found.next();
    assert!(found.next().is_none(), "two CORS filters on one rule");
    first
}

const CORS: &str = "  cors:\n    allowOrigins: [\"https://*.shop.test\", \"https://www.shop.test\"]\n    \
    allowMethods: [GET, POST]\n    allowHeaders: [authorization]\n    exposeHeaders: [x-total]\n    \
    maxAge: 10m\n    allowCredentials: true\n";

#[test]
fn a_policys_cors_is_the_cors_filter_of_the_rules_it_covers() {
    let yaml = BASE.to_owned() + &policy("web", "2024-01-01T00:00:00Z", SHOP, &(jwt() + CORS));
    let t = run(&yaml);
    let (ok, _, message) = accepted(&t, "SecurityPolicy", "web");
    assert!(ok, "{message}");
    for rule in ["admin", "public"] {
        assert_eq!(
            access(&t, "shop", Some(rule)),
            ["SecurityPolicy/apps/web/jwt"]
        );
        let cors = cors_of(&t, "shop", Some(rule)).expect(rule);
        assert_eq!(
            cors.allow_origins,
            ["https://*.shop.test", "https://www.shop.test"]
        );
        assert_eq!(cors.allow_methods, ["GET", "POST"]);
        assert_eq!(cors.allow_headers, ["authorization"]);
        assert_eq!(cors.expose_headers, ["x-total"]);
        assert_eq!(cors.max_age, Some(600));
        assert!(cors.allow_credentials);
    }
    // Another route is untouched.
    assert!(cors_of(&t, "blog", None).is_none());
}

#[test]
fn a_rules_own_cors_filter_wins_over_the_policys_and_the_status_says_so() {
    let yaml = BASE.to_owned()
        + "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
           metadata: { name: spa, namespace: apps }\n\
           spec:\n  parentRefs: [{ name: gw }]\n  hostnames: [spa.test]\n  rules:\n  \
           - name: api\n    matches: [{ path: { type: PathPrefix, value: /api } }]\n    \
           filters: [{ type: CORS, cors: { allowOrigins: [\"https://own.test\"] } }]\n    \
           backendRefs: [{ name: app, port: 8080 }]\n  \
           - name: page\n    backendRefs: [{ name: app, port: 8080 }]\n"
        + &policy(
            "spa",
            "2024-01-01T00:00:00Z",
            "{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: spa }",
            &(jwt() + CORS),
        );
    let t = run(&yaml);
    assert_eq!(
        cors_of(&t, "spa", Some("api")).unwrap().allow_origins,
        ["https://own.test"]
    );
    assert_eq!(
        cors_of(&t, "spa", Some("page")).unwrap().allow_origins,
        ["https://*.shop.test", "https://www.shop.test"]
    );
    // Both rules are still guarded by the policy's checks.
    assert_eq!(
        access(&t, "spa", Some("api")),
        ["SecurityPolicy/apps/spa/jwt"]
    );
    let (ok, _, message) = accepted(&t, "SecurityPolicy", "spa");
    assert!(ok, "{message}");
    assert!(
        message.contains("own CORS filter on rule api applies there instead of this policy's cors"),
        "{message}"
    );
}

#[test]
fn a_cors_only_policy_is_accepted_and_adds_no_check() {
    let yaml = BASE.to_owned() + &policy("cors", "2024-01-01T00:00:00Z", SHOP, CORS);
    let t = run(&yaml);
    let (ok, _, message) = accepted(&t, "SecurityPolicy", "cors");
    assert!(ok, "{message}");
    assert!(access(&t, "shop", Some("admin")).is_empty());
    assert!(cors_of(&t, "shop", Some("admin")).is_some());
    assert!(t.access_policies().is_empty());
}

#[test]
fn an_invalid_cors_refuses_the_policy_and_its_rules_naming_the_field() {
    let yaml = BASE.to_owned()
        + &policy(
            "bad",
            "2024-01-01T00:00:00Z",
            SHOP,
            "  cors:\n    allowOrigins: [\"https://ok.test\", \"ftp://no.test\"]\n",
        )
        + &policy(
            "bad-age",
            "2024-01-01T00:00:01Z",
            "{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: blog }",
            &(BASIC.to_owned() + "  cors:\n    allowOrigins: [\"*\"]\n    maxAge: soon\n"),
        );
    let t = run(&yaml);
    let (ok, reason, message) = accepted(&t, "SecurityPolicy", "bad");
    assert!(!ok);
    assert_eq!(reason, "Invalid");
    assert!(message.contains("spec.cors.allowOrigins[1]"), "{message}");
    // Refused, the policy still guards its rules: they answer 500, with no CORS.
    assert_eq!(
        access(&t, "shop", Some("admin")),
        ["SecurityPolicy/apps/bad"]
    );
    assert!(
        t.access_policies()["SecurityPolicy/apps/bad"]
            .spec()
            .is_none()
    );
    assert!(cors_of(&t, "shop", Some("admin")).is_none());
    let (ok, _, message) = accepted(&t, "SecurityPolicy", "bad-age");
    assert!(!ok);
    assert!(message.contains("spec.cors.maxAge"), "{message}");
    assert_eq!(
        access(&t, "blog", None),
        ["SecurityPolicy/apps/bad-age/basicAuth"]
    );
    assert!(
        t.access_policies()["SecurityPolicy/apps/bad-age/basicAuth"]
            .spec()
            .is_none()
    );
}

#[test]
fn a_security_override_has_no_cors() {
    let yaml = BASE.to_owned()
        + &override_(
            "platform",
            "2024-01-01T00:00:00Z",
            &(BASIC.to_owned() + CORS),
        );
    let t = run(&yaml);
    let (ok, reason, message) = accepted(&t, "SecurityOverride", "platform");
    assert!(!ok);
    assert_eq!(reason, "Unsupported");
    assert!(message.contains("cors"), "{message}");
    assert_eq!(
        access(&t, "shop", Some("admin")),
        ["SecurityOverride/apps/platform"]
    );
    assert!(cors_of(&t, "shop", Some("admin")).is_none());
}

/// A ReferenceGrant in `ns` from `group`/`kind` objects in `apps` to `to_kind`s.
fn grant(ns: &str, group: &str, kind: &str, to_kind: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\n\
         metadata: {{ name: from-apps-{}, namespace: {ns} }}\n\
         spec:\n  from: [{{ group: {group}, kind: {kind}, namespace: apps }}]\n  \
         to: [{{ group: \"\", kind: {to_kind} }}]\n",
        kind.to_lowercase()
    )
}

const VAULT: &str = "---\napiVersion: v1\nkind: Secret\nmetadata: { name: shared-keys, namespace: vault }\n\
    stringData: { dave: key-d-1 }\n\
    ---\napiVersion: v1\nkind: Secret\nmetadata: { name: shared-users, namespace: vault }\n\
    stringData: { .htpasswd: \"erin:$2y$05$abcdefghijklmnopqrstuv\" }\n";

const CROSS_KEYS: &str = "  apiKeyAuth:\n    credentialRefs: [{ name: shared-keys, namespace: vault }]\n    \
    extractFrom: [{ headers: [x-api-key] }]\n";

#[test]
fn a_secret_in_another_namespace_needs_a_reference_grant_from_security_policies() {
    let base = BASE.to_owned() + VAULT + &policy("keys", "2024-01-01T00:00:00Z", SHOP, CROSS_KEYS);

    // No grant, or one for routes only: refused, naming the field; the rules refuse.
    for extra in [
        String::new(),
        grant("vault", "gateway.networking.k8s.io", "HTTPRoute", "Secret"),
    ] {
        let t = run(&(base.clone() + &extra));
        let (ok, reason, message) = accepted(&t, "SecurityPolicy", "keys");
        assert!(!ok, "{extra}");
        assert_eq!(reason, "RefNotPermitted", "{message}");
        assert!(
            message.contains("spec.apiKeyAuth.credentialRefs[0]")
                && message.contains("Secret vault/shared-keys is not permitted"),
            "{message}"
        );
        assert_eq!(
            access(&t, "shop", Some("public")),
            ["SecurityPolicy/apps/keys/apiKeyAuth"]
        );
        assert!(
            t.access_policies()["SecurityPolicy/apps/keys/apiKeyAuth"]
                .spec()
                .is_none()
        );
    }

    // Granted from Envoy Gateway's SecurityPolicy kind: the keys are read.
    let t = run(&(base + &grant("vault", "gateway.envoyproxy.io", "SecurityPolicy", "Secret")));
    let (ok, _, message) = accepted(&t, "SecurityPolicy", "keys");
    assert!(ok, "{message}");
    let entry = &t.access_policies()["SecurityPolicy/apps/keys/apiKeyAuth"];
    let Some(AccessSpec::ApiKey(spec)) = entry.spec().map(|s| &**s) else {
        panic!("{entry:?}")
    };
    assert_eq!(spec.consumers.len(), 1);
    assert_eq!(spec.consumers[0].client_id, "dave");
    assert_eq!(spec.consumers[0].keys, [KeyDigest::of(b"key-d-1")]);
}

#[test]
fn a_security_override_reads_another_namespace_with_a_grant_from_gatekit_io() {
    let spec = "  basicAuth: { users: { name: shared-users, namespace: vault } }\n";
    let base = BASE.to_owned() + VAULT + &override_("platform", "2024-01-01T00:00:00Z", spec);
    let t =
        run(&(base.clone() + &grant("vault", "gateway.envoyproxy.io", "SecurityPolicy", "Secret")));
    let (ok, reason, message) = accepted(&t, "SecurityOverride", "platform");
    assert!(!ok);
    assert_eq!(reason, "RefNotPermitted");
    assert!(message.contains("spec.basicAuth.users"), "{message}");
    assert_eq!(
        access(&t, "blog", None),
        ["SecurityOverride/apps/platform/basicAuth"]
    );

    let t = run(&(base + &grant("vault", "gatekit.io", "SecurityOverride", "Secret")));
    let (ok, _, message) = accepted(&t, "SecurityOverride", "platform");
    assert!(ok, "{message}");
    let entry = &t.access_policies()["SecurityOverride/apps/platform/basicAuth"];
    assert!(matches!(
        entry.spec().map(|s| &**s),
        Some(AccessSpec::Basic(_))
    ));
}

#[test]
fn an_ext_auth_service_in_another_namespace_needs_a_reference_grant() {
    let base = BASE.to_owned()
        + "---\napiVersion: v1\nkind: Service\nmetadata: { name: authz, namespace: auth }\n\
           spec: { ports: [{ port: 9000 }] }\n"
        + &policy(
            "ext",
            "2024-01-01T00:00:00Z",
            SHOP,
            "  extAuth:\n    http: { backendRefs: [{ name: authz, namespace: auth, port: 9000 }] }\n",
        );
    let t = run(&base);
    let (ok, reason, message) = accepted(&t, "SecurityPolicy", "ext");
    assert!(!ok);
    assert_eq!(reason, "RefNotPermitted", "{message}");
    assert!(
        message.contains("spec.extAuth.http.backendRefs"),
        "{message}"
    );
    assert!(!t.upstreams().contains_key("auth/authz:9000"));
    assert_eq!(
        access(&t, "shop", Some("admin")),
        ["SecurityPolicy/apps/ext/extAuth"]
    );

    let t = run(&(base + &grant("auth", "gateway.envoyproxy.io", "SecurityPolicy", "Service")));
    let (ok, _, message) = accepted(&t, "SecurityPolicy", "ext");
    assert!(ok, "{message}");
    let entry = &t.access_policies()["SecurityPolicy/apps/ext/extAuth"];
    let Some(AccessSpec::ExtAuth(spec)) = entry.spec().map(|s| &**s) else {
        panic!("{entry:?}")
    };
    assert_eq!(spec.upstream, "auth/authz:9000");
    assert!(t.upstreams().contains_key("auth/authz:9000"));
}

// === oidc ===

const CLIENT_SECRET: &str = "oidc-client-secret-value";

const OIDC_SECRET: &str = "---\napiVersion: v1\nkind: Secret\n\
    metadata: { name: oidc-client, namespace: apps }\n\
    stringData: { client-secret: oidc-client-secret-value, other: another-value }\n";

const IDP_SERVICE: &str = "---\napiVersion: v1\nkind: Service\n\
    metadata: { name: idp, namespace: apps }\nspec: { ports: [{ port: 8443 }] }\n";

/// A policy on the `shop` route with `oidc` set to `body` (indented under `oidc:`).
fn oidc_policy(name: &str, body: &str) -> String {
    let body: String = body.lines().map(|l| format!("    {l}\n")).collect();
    policy(
        name,
        "2024-01-01T00:00:00Z",
        SHOP,
        &format!("  oidc:\n{body}"),
    )
}

fn oidc_spec(t: &Translation, name: &str) -> OidcSpec {
    let entry = &t.access_policies()[&format!("SecurityPolicy/apps/{name}/oidc")];
    let Some(AccessSpec::Oidc(spec)) = entry.spec().map(|s| &**s) else {
        panic!("{entry:?} {:?}", t.errors())
    };
    (**spec).clone()
}

/// Asserts policy `name` is refused `Invalid` naming `field`, its rules list it with no
/// spec (so they answer 500), and the client secret is nowhere in the status or errors.
fn refused_invalid(t: &Translation, name: &str, field: &str, why: &str) {
    let (ok, reason, message) = accepted(t, "SecurityPolicy", name);
    assert!(!ok, "{message}");
    assert_eq!(reason, "Invalid", "{message}");
    assert!(message.contains(field), "{field} not in {message}");
    assert!(message.contains(why), "{why} not in {message}");
    let full = format!("SecurityPolicy/apps/{name}/oidc");
    assert_eq!(access(t, "shop", Some("admin")), [full.as_str()]);
    let entry = &t.access_policies()[&full];
    assert!(entry.spec().is_none(), "{entry:?}");
    assert!(entry.problem().unwrap().contains(field));
    assert!(
        t.errors().iter().any(|e| e.field() == field),
        "{:?}",
        t.errors()
    );
    let everything = format!("{t:?}");
    assert!(!everything.contains(CLIENT_SECRET));
}

#[test]
fn a_full_oidc_policy_translates_to_the_expected_spec() {
    let yaml = BASE.to_owned()
        + OIDC_SECRET
        + IDP_SERVICE
        + "---\napiVersion: v1\nkind: Secret\nmetadata: { name: oidc-id, namespace: apps }\n\
           stringData: { client-id: web-app }\n"
        + &policy(
            "login",
            "2024-01-01T00:00:00Z",
            SHOP,
            &format!(
                "{}{}  oidc:\n{}",
                BASIC,
                jwt(),
                [
                    "provider:",
                    "  issuer: https://idp.test/realms/r",
                    "  authorizationEndpoint: https://idp.test/auth?prompt=login",
                    "  tokenEndpoint: https://idp.test/token",
                    "  endSessionEndpoint: https://idp.test/logout",
                    "  backendRefs: [{ name: idp, port: 8443 }]",
                    "clientIDRef: { name: oidc-id }",
                    "clientSecret: { name: oidc-client }",
                    "scopes: [email, openid, profile]",
                    "resources: [https://api.test]",
                    "redirectURL: https://app.test/auth/callback",
                    "logoutPath: /auth/logout",
                    "forwardAccessToken: true",
                    "defaultTokenTTL: 30m",
                    "refreshToken: true",
                    "defaultRefreshTokenTTL: 24h",
                    "csrfTokenTTL: 5m",
                    "cookieNames: { accessToken: at, idToken: it }",
                    "cookieDomain: app.test",
                    "cookieConfig: { sameSite: Lax }",
                    "denyRedirect:",
                    "  headers:",
                    "  - { name: x-requested-with, value: XMLHttpRequest }",
                    "  - { name: accept, type: Prefix, value: application/json }",
                    "  - { name: user-agent, type: Suffix, value: bot }",
                    "  - { name: x-client, type: RegularExpression, value: \"cli-[0-9]+\" }",
                    "passThroughAuthHeader: true",
                    "disableTokenEncryption: false",
                ]
                .iter()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
            ),
        );
    let t = run(&yaml);
    // (BASE's routes name a Service it does not define: those errors are not ours.)
    let ours: Vec<_> = t
        .errors()
        .iter()
        .filter(|e| !e.field().starts_with("spec.rules"))
        .collect();
    assert!(ours.is_empty(), "{ours:?}");
    // Envoy Gateway's filter order: basicAuth, oidc, then jwt.
    assert_eq!(
        access(&t, "shop", Some("admin")),
        [
            "SecurityPolicy/apps/login/basicAuth",
            "SecurityPolicy/apps/login/oidc",
            "SecurityPolicy/apps/login/jwt",
        ]
    );
    assert!(accepted(&t, "SecurityPolicy", "login").0);
    let s = oidc_spec(&t, "login");
    assert_eq!(s.issuer, "https://idp.test/realms/r");
    assert_eq!(
        s.authorization_endpoint.as_deref(),
        Some("https://idp.test/auth?prompt=login")
    );
    assert_eq!(s.token_endpoint.as_deref(), Some("https://idp.test/token"));
    assert_eq!(
        s.end_session_endpoint.as_deref(),
        Some("https://idp.test/logout")
    );
    assert_eq!(s.upstream.as_deref(), Some("apps/idp:8443"));
    assert!(t.upstreams().contains_key("apps/idp:8443"));
    assert_eq!(s.client_id, "web-app");
    assert_eq!(s.client_secret.expose(), CLIENT_SECRET);
    assert_eq!(s.scopes, ["email", "openid", "profile"]);
    assert_eq!(s.resources, ["https://api.test"]);
    assert_eq!(s.redirect.scheme.as_deref(), Some("https"));
    assert_eq!(s.redirect.authority.as_deref(), Some("app.test"));
    assert_eq!(s.redirect.path(), "/auth/callback");
    assert_eq!(s.logout_path, "/auth/logout");
    assert!(s.forward_access_token && s.refresh_token && s.pass_through_auth_header);
    assert_eq!(s.default_token_ttl, Some(Duration::from_secs(1800)));
    assert_eq!(s.default_refresh_token_ttl, Duration::from_secs(86400));
    assert_eq!(s.csrf_token_ttl, Duration::from_secs(300));
    assert_eq!(
        (s.access_token_cookie.as_str(), s.id_token_cookie.as_str()),
        ("at", "it")
    );
    assert_eq!(s.cookie_domain.as_deref(), Some("app.test"));
    assert_eq!(s.same_site, Some(SameSite::Lax));
    let deny: Vec<(&str, &OidcStringMatch)> = s
        .deny_redirect
        .iter()
        .map(|h| (h.name.as_str(), &h.value))
        .collect();
    assert_eq!(
        deny,
        [
            (
                "x-requested-with",
                &OidcStringMatch::Exact("XMLHttpRequest".into())
            ),
            (
                "accept",
                &OidcStringMatch::Prefix("application/json".into())
            ),
            ("user-agent", &OidcStringMatch::Suffix("bot".into())),
            ("x-client", &OidcStringMatch::Regex("cli-[0-9]+".into())),
        ]
    );
}

#[test]
fn oidc_defaults_are_envoy_gateways() {
    let yaml = BASE.to_owned()
        + OIDC_SECRET
        + &oidc_policy(
            "login",
            "provider: { issuer: \"https://idp.test\" }\nclientID: web\nclientSecret: { name: oidc-client }",
        );
    let t = run(&yaml);
    let s = oidc_spec(&t, "login");
    assert_eq!(s.client_id, "web");
    assert_eq!(
        (
            &s.authorization_endpoint,
            &s.token_endpoint,
            &s.end_session_endpoint
        ),
        (&None, &None, &None),
        "discovered at run time"
    );
    assert_eq!(s.upstream, None);
    assert_eq!(s.scopes, ["openid"]);
    assert!(s.resources.is_empty());
    // `%REQ(x-forwarded-proto)%://%REQ(:authority)%/oauth2/callback`
    assert_eq!((&s.redirect.scheme, &s.redirect.authority), (&None, &None));
    assert_eq!(s.redirect.path(), "/oauth2/callback");
    assert_eq!(
        s.redirect.url("https", "shop.test"),
        "https://shop.test/oauth2/callback"
    );
    assert_eq!(s.logout_path, "/logout");
    assert!(!s.forward_access_token && !s.refresh_token && !s.pass_through_auth_header);
    assert_eq!(s.default_token_ttl, None);
    assert_eq!(s.default_refresh_token_ttl, Duration::from_secs(7 * 86400));
    assert_eq!(s.csrf_token_ttl, Duration::from_secs(600));
    assert_eq!(
        s.access_token_cookie,
        format!("AccessToken-{}", s.cookie_suffix)
    );
    assert_eq!(s.id_token_cookie, format!("IdToken-{}", s.cookie_suffix));
    assert_eq!(s.cookie_suffix.len(), 8, "{}", s.cookie_suffix);
    assert_eq!((&s.cookie_domain, s.same_site), (&None, None));
    assert!(s.deny_redirect.is_empty());

    // Another policy gets other cookie names (no collision on one host).
    let other = BASE.to_owned()
        + OIDC_SECRET
        + &oidc_policy(
            "login2",
            "provider: { issuer: \"https://idp.test\" }\nclientID: web\nclientSecret: { name: oidc-client }",
        );
    assert_ne!(
        oidc_spec(&run(&other), "login2").cookie_suffix,
        s.cookie_suffix
    );
}

#[test]
fn a_missing_client_secret_secret_or_key_refuses_the_policy_naming_the_field() {
    let body =
        "provider: { issuer: \"https://idp.test\" }\nclientID: web\nclientSecret: { name: NAME }";
    // No Secret.
    let t = run(&(BASE.to_owned() + &oidc_policy("login", &body.replace("NAME", "nowhere"))));
    refused_invalid(
        &t,
        "login",
        "spec.oidc.clientSecret",
        "Secret apps/nowhere not found",
    );
    // A Secret without the `client-secret` key.
    let t = run(&(BASE.to_owned()
        + "---\napiVersion: v1\nkind: Secret\nmetadata: { name: wrong-key, namespace: apps }\n\
           stringData: { clientSecret: oidc-client-secret-value }\n"
        + &oidc_policy("login", &body.replace("NAME", "wrong-key"))));
    refused_invalid(&t, "login", "spec.oidc.clientSecret", "\"client-secret\"");
    // No clientSecret at all.
    let t = run(&(BASE.to_owned()
        + &oidc_policy(
            "login",
            "provider: { issuer: \"https://idp.test\" }\nclientID: web",
        )));
    refused_invalid(&t, "login", "spec.oidc.clientSecret", "required");
}

#[test]
fn a_bad_redirect_url_or_value_refuses_the_policy_naming_the_field() {
    let cases = [
        (
            "redirectURL: /callback",
            "spec.oidc.redirectURL",
            "not an absolute URL",
        ),
        (
            "redirectURL: \"ftp://app.test/cb\"",
            "spec.oidc.redirectURL",
            "scheme",
        ),
        (
            "redirectURL: \"https://app.test/\"",
            "spec.oidc.redirectURL",
            "cannot be /",
        ),
        (
            "redirectURL: \"https://%REQ(host)%/cb\"",
            "spec.oidc.redirectURL",
            "%REQ(:authority)%",
        ),
        (
            "logoutPath: /oauth2/callback",
            "spec.oidc.logoutPath",
            "redirectURL",
        ),
        (
            "cookieConfig: { sameSite: Sometimes }",
            "spec.oidc.cookieConfig.sameSite",
            "Lax",
        ),
        ("cookieDomain: App.Test", "spec.oidc.cookieDomain", "domain"),
        (
            "cookieNames: { accessToken: \"a b\" }",
            "spec.oidc.cookieNames.accessToken",
            "cookie name",
        ),
        (
            "defaultTokenTTL: 10 minutes",
            "spec.oidc.defaultTokenTTL",
            "",
        ),
        (
            "denyRedirect: { headers: [{ name: x, type: RegularExpression, value: \"(\" }] }",
            "spec.oidc.denyRedirect.headers[0].value",
            "regular expression",
        ),
        (
            "passThroughAuthHeader: true",
            "spec.oidc.passThroughAuthHeader",
            "jwt",
        ),
    ];
    for (extra, field, why) in cases {
        let body = format!(
            "provider: {{ issuer: \"https://idp.test\" }}\nclientID: web\n\
             clientSecret: {{ name: oidc-client }}\n{extra}"
        );
        let t = run(&(BASE.to_owned() + OIDC_SECRET + &oidc_policy("login", &body)));
        refused_invalid(&t, "login", field, why);
    }
    // A bad issuer, provider.backendRef, and both clientID forms.
    let t = run(&(BASE.to_owned()
        + OIDC_SECRET
        + &oidc_policy(
            "login",
            "provider: { issuer: idp.test }\nclientID: web\nclientSecret: { name: oidc-client }",
        )));
    refused_invalid(&t, "login", "spec.oidc.provider.issuer", "http(s) URL");
    let t = run(&(BASE.to_owned()
        + OIDC_SECRET
        + IDP_SERVICE
        + &oidc_policy(
            "login",
            "provider: { issuer: \"https://idp.test\", backendRef: { name: idp, port: 8443 } }\n\
             clientID: web\nclientSecret: { name: oidc-client }",
        )));
    refused_invalid(&t, "login", "spec.oidc.provider.backendRef", "backendRefs");
    let t = run(&(BASE.to_owned()
        + OIDC_SECRET
        + &oidc_policy(
            "login",
            "provider: { issuer: \"https://idp.test\" }\nclientID: web\n\
             clientIDRef: { name: oidc-client }\nclientSecret: { name: oidc-client }",
        )));
    refused_invalid(&t, "login", "spec.oidc.clientID", "exactly one");
}

#[test]
fn the_client_secret_is_in_no_debug_output_or_status() {
    let yaml = BASE.to_owned()
        + OIDC_SECRET
        + &oidc_policy(
            "login",
            "provider: { issuer: \"https://idp.test\" }\nclientID: web\nclientSecret: { name: oidc-client }",
        )
        // A refused one too: its problem text must not carry the secret either.
        + &policy(
            "broken",
            "2024-01-01T00:00:00Z",
            "{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: blog }",
            "  oidc:\n    provider: { issuer: \"https://idp.test\" }\n    clientID: web\n    \
             clientSecret: { name: oidc-client }\n    redirectURL: nonsense\n",
        );
    let t = run(&yaml);
    let s = oidc_spec(&t, "login");
    assert_eq!(s.client_secret.expose(), CLIENT_SECRET);
    assert!(!format!("{s:?}").contains(CLIENT_SECRET));
    assert!(!format!("{:?}", AccessSpec::Oidc(Box::new(s))).contains(CLIENT_SECRET));
    for text in [
        format!("{t:?}"),
        format!("{:?}", t.statuses()),
        format!("{:?}", t.errors()),
        format!("{:?}", t.access_policies()),
    ] {
        assert!(!text.contains(CLIENT_SECRET));
        assert!(!text.contains("another-value"));
    }
    assert!(!accepted(&t, "SecurityPolicy", "broken").0);
}
