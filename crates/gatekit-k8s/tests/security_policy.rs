//! SecurityPolicy and SecurityOverride translation: precedence, conflicts, overrides
//! listed before a rule's own policy, refused and unresolvable policies (listed, no
//! spec, status says why), and the specs read from Secrets and Services.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "support/status.rs"]
mod support;

use gatekit_k8s::Translation;
use gatekit_k8s::translate::AccessSpec;
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
fn a_policy_with_oidc_is_refused_and_its_rules_refuse_every_request() {
    let yaml = BASE.to_owned()
        + &policy(
            "login",
            "2024-01-01T00:00:00Z",
            SHOP,
            "  oidc: { provider: { issuer: https://idp.test }, clientID: web, clientSecret: { name: s } }\n",
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
    assert!(message.contains("oidc"), "{message}");
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
    assert_eq!(alice.keys, ["key-a-1", "key-a-2"]);
    assert_eq!(spec.forward_header.as_deref(), Some("x-client"));
    let debug = format!("{t:?}");
    for key in ["key-a-1", "key-a-2", "key-b-1", "abcdefghijklmnop"] {
        assert!(!debug.contains(key), "{key} in debug output");
    }
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
    assert_eq!(spec.consumers[0].keys, ["key-d-1"]);
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
