//! Session persistence (GEP-1619) from `XBackendTrafficPolicy` and the HTTPRoute rule's
//! inline `sessionPersistence`: translation, validation errors naming fields, and the
//! policy's status field by field.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gatekit_core::retry::RetryBudgetConfig;
use gatekit_core::route::{Route, Rule};
use gatekit_core::session::{CookieLifetime, SessionMode, SessionPersistence};
use gatekit_k8s::status::AncestorStatus;
use gatekit_k8s::{ResourceSet, TranslateOptions, Translation, translate};

fn run(yaml: &str) -> Translation {
    let (set, _) = ResourceSet::from_documents([("fixture.yaml", yaml)]).unwrap();
    translate(&set, &TranslateOptions::default())
}

fn route<'a>(t: &'a Translation, name: &str) -> &'a Route {
    t.routes_for_port(80)
        .iter()
        .find(|r| r.id.name() == name)
        .unwrap_or_else(|| panic!("no route {name}"))
}

fn rule<'a>(t: &'a Translation, name: &str) -> &'a Rule {
    &route(t, name).rules[0]
}

const BASE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw }
spec:
  gatewayClassName: gatekit
  listeners: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec: { ports: [{ port: 80 }] }
---
apiVersion: v1
kind: Service
metadata: { name: api }
spec: { ports: [{ port: 80 }] }
"#;

fn with_route(session: &str, extra: &str) -> String {
    format!(
        r#"{BASE}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: r }}
spec:
  parentRefs: [{{ name: gw }}]
  rules:
  - backendRefs: [{{ name: web, port: 80 }}, {{ name: api, port: 80 }}]
{session}{extra}"#
    )
}

#[test]
fn the_inline_rule_field_becomes_the_rules_session_persistence() {
    let t = run(&with_route(
        "    sessionPersistence:\n      sessionName: sid\n      absoluteTimeout: 1h\n      \
         idleTimeout: 10m\n      cookieConfig: { lifetimeType: Permanent }\n",
        "",
    ));
    assert!(t.errors().is_empty(), "{:?}", t.errors());
    let expected = SessionPersistence::cookie(Some("sid".into()))
        .with_lifetime(CookieLifetime::Permanent)
        .with_absolute_timeout(Some(Duration::from_secs(3600)))
        .with_idle_timeout(Some(Duration::from_secs(600)));
    assert_eq!(rule(&t, "r").policy.session, Some(expected));

    let t = run(&with_route(
        "    sessionPersistence: { type: Header, sessionName: X-Session }\n",
        "",
    ));
    let s = rule(&t, "r").policy.session.clone().unwrap();
    assert_eq!(s.mode(), &SessionMode::Header);
    assert_eq!(s.name(), Some("X-Session"));
    // Defaults: a session cookie on `/`, no name (one is generated per rule).
    let t = run(&with_route("    sessionPersistence: {}\n", ""));
    assert_eq!(
        rule(&t, "r").policy.session,
        Some(SessionPersistence::cookie(None))
    );
}

#[test]
fn invalid_inline_values_drop_the_rule_naming_the_field() {
    for (session, field) in [
        (
            "{ cookieConfig: { lifetimeType: Permanent } }",
            "spec.rules[0].sessionPersistence.absoluteTimeout",
        ),
        (
            "{ idleTimeout: 5 minutes }",
            "spec.rules[0].sessionPersistence.idleTimeout",
        ),
        (
            "{ absoluteTimeout: 0s }",
            "spec.rules[0].sessionPersistence.absoluteTimeout",
        ),
        (
            "{ sessionName: \"my session\" }",
            "spec.rules[0].sessionPersistence.sessionName",
        ),
        (
            "{ type: Header, sessionName: \"bad:header\" }",
            "spec.rules[0].sessionPersistence.sessionName",
        ),
    ] {
        // A second, valid rule keeps the route attached.
        let t = run(&with_route(
            &format!("    sessionPersistence: {session}\n"),
            "  - matches: [{ path: { value: /ok } }]\n    backendRefs: [{ name: web, port: 80 }]\n",
        ));
        let fields: Vec<&str> = t.errors().iter().map(|e| e.field()).collect();
        assert_eq!(fields, [field], "{session}");
        let r = rule(&t, "r");
        assert!(
            r.backends.is_empty() && r.policy.session.is_none(),
            "{session}"
        );
    }
}

fn x_policy(name: &str, targets: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.x-k8s.io/v1alpha1\nkind: XBackendTrafficPolicy\n\
         metadata: {{ name: {name} }}\nspec:\n  targetRefs: {targets}\n{spec}"
    )
}

#[test]
fn an_xbackendtrafficpolicy_gives_its_services_backend_refs_sessions_and_retry_budgets() {
    let t = run(&with_route(
        "",
        &x_policy(
            "sticky",
            "[{ group: \"\", kind: Service, name: web }]",
            "  sessionPersistence: { sessionName: sid, idleTimeout: 30s }\n  \
             retryConstraint:\n    budget: { percent: 30, interval: 5s }\n    \
             minRetryRate: { count: 4, interval: 2s }\n",
        ),
    ));
    assert!(t.errors().is_empty(), "{:?}", t.errors());
    let r = rule(&t, "r");
    assert_eq!(r.policy.session, None, "backend-level, not the rule's");
    let web = &r.backends[0];
    assert_eq!(
        web.session.as_deref(),
        Some(
            &SessionPersistence::cookie(Some("sid".into()))
                .with_idle_timeout(Some(Duration::from_secs(30)))
        )
    );
    let mut budget = RetryBudgetConfig::default();
    budget.percent = 30.0;
    budget.interval = Duration::from_secs(5);
    budget.min_retries_per_second = 2;
    assert_eq!(web.retry_budget.as_deref(), Some(&budget));
    let api = &r.backends[1];
    assert!(api.session.is_none() && api.retry_budget.is_none());
}

fn ancestor<'a>(t: &'a Translation, policy: &str, service: &str) -> &'a AncestorStatus {
    t.status("XBackendTrafficPolicy", Some("default"), policy)
        .unwrap()
        .ancestors()
        .iter()
        .find(|a| a.ancestor().name == service)
        .unwrap_or_else(|| panic!("no ancestor {service} for {policy}"))
}

#[test]
fn xbackendtrafficpolicy_status_field_by_field() {
    let mut yaml = with_route("", "");
    yaml.push_str(&x_policy(
        "older",
        "[{ group: \"\", kind: Service, name: web }, { group: \"\", kind: Service, name: gone }, \
         { group: apps, kind: Deployment, name: web-deploy }]",
        "  sessionPersistence: { sessionName: a }\n",
    ));
    // Same creation time: the name orders them; "zz" is the newer one.
    yaml.push_str(&x_policy(
        "zz-newer",
        "[{ group: \"\", kind: Service, name: web }, { group: \"\", kind: Service, name: api }]",
        "  sessionPersistence: { sessionName: b }\n",
    ));
    yaml.push_str(&x_policy(
        "invalid",
        "[{ group: \"\", kind: Service, name: api }]",
        "  sessionPersistence: { cookieConfig: { lifetimeType: Permanent } }\n  \
         retryConstraint: { budget: { percent: 200 } }\n",
    ));
    let t = run(&yaml);
    let status = |name: &str| {
        t.status("XBackendTrafficPolicy", Some("default"), name)
            .unwrap()
    };

    // The older policy: Accepted (it applies to web), the others' messages say why not.
    let older = status("older");
    let c = older.condition("Accepted").unwrap();
    assert!(c.is_true());
    assert_eq!(c.reason(), "Accepted");
    assert!(
        c.message().contains("Service default/gone not found"),
        "{}",
        c.message()
    );
    assert!(c.message().contains("only Services"), "{}", c.message());
    let web = ancestor(&t, "older", "web");
    assert_eq!(
        (web.ancestor().group, web.ancestor().kind.as_str()),
        ("", "Service")
    );
    assert_eq!(web.ancestor().namespace, "default");
    assert_eq!(web.ancestor().section_name, None);
    assert!(web.condition("Accepted").unwrap().is_true());
    let gone = ancestor(&t, "older", "gone").condition("Accepted").unwrap();
    assert!(!gone.is_true());
    assert_eq!(gone.reason(), "TargetNotFound");

    // The newer one: Conflicted at web (naming the older), Accepted at api.
    let web = ancestor(&t, "zz-newer", "web")
        .condition("Accepted")
        .unwrap();
    assert!(!web.is_true());
    assert_eq!(web.reason(), "Conflicted");
    assert!(web.message().contains("default/older"), "{}", web.message());
    assert!(
        ancestor(&t, "zz-newer", "api")
            .condition("Accepted")
            .unwrap()
            .is_true()
    );
    assert!(status("zz-newer").condition("Accepted").unwrap().is_true());

    // Invalid values: refused whole, each field named, an error per field.
    let c = status("invalid").condition("Accepted").unwrap().clone();
    assert!(!c.is_true());
    assert_eq!(c.reason(), "Invalid");
    assert!(
        c.message()
            .contains("spec.sessionPersistence.absoluteTimeout"),
        "{}",
        c.message()
    );
    assert!(
        c.message().contains("spec.retryConstraint.budget.percent"),
        "{}",
        c.message()
    );
    let api = ancestor(&t, "invalid", "api")
        .condition("Accepted")
        .unwrap();
    assert_eq!((api.is_true(), api.reason()), (false, "Invalid"));
    let fields: Vec<&str> = t.errors().iter().map(|e| e.field()).collect();
    assert!(
        fields.contains(&"spec.sessionPersistence.absoluteTimeout"),
        "{fields:?}"
    );

    // What applied: web has the older policy's session, api the newer's.
    let r = rule(&t, "r");
    assert_eq!(r.backends[0].session.as_ref().unwrap().name(), Some("a"));
    assert_eq!(r.backends[1].session.as_ref().unwrap().name(), Some("b"));
}

#[test]
fn a_backend_policys_retry_budget_wins_and_the_status_says_so() {
    let mut yaml = with_route(
        "",
        "---\napiVersion: gatekit.io/v1alpha1\nkind: BackendPolicy\nmetadata: { name: bp }\n\
         spec:\n  targetRefs: [{ kind: Service, name: web }]\n  retryBudget: { percent: 50 }\n",
    );
    yaml.push_str(&x_policy(
        "x",
        "[{ group: \"\", kind: Service, name: web }]",
        "  retryConstraint: { budget: { percent: 10 } }\n",
    ));
    let t = run(&yaml);
    assert_eq!(
        rule(&t, "r").backends[0]
            .retry_budget
            .as_ref()
            .unwrap()
            .percent,
        50.0
    );
    let c = t
        .status("XBackendTrafficPolicy", Some("default"), "x")
        .unwrap()
        .condition("Accepted")
        .unwrap();
    assert!(c.is_true());
    assert!(
        c.message().contains("BackendPolicy's retryBudget wins"),
        "{}",
        c.message()
    );
}

/// The route of the GEP-1619 examples: one rule to `web` (as `servicev1`).
fn gep_policy(session: &str) -> Translation {
    run(&with_route(
        "",
        &x_policy(
            "lbp",
            "[{ group: \"\", kind: Service, name: web }]",
            &format!("  sessionPersistence:\n{session}"),
        ),
    ))
}

fn web_session(t: &Translation) -> SessionPersistence {
    assert!(t.errors().is_empty(), "{:?}", t.errors());
    *rule(t, "r").backends[0].session.clone().unwrap()
}

#[test]
fn the_geps_v1_7_and_v1_6_examples_give_the_same_cookie() {
    // GEP-1619 at Gateway API v1.7 ("Route Rules Referencing to a Session Persistent
    // Enabled Service") and the same example at v1.6.
    let v17 = gep_policy("    type: Cookie\n    cookie:\n      name: service-cookie\n");
    let v16 = gep_policy("    type: Cookie\n    sessionName: service-cookie\n");
    let expected = SessionPersistence::cookie(Some("service-cookie".into()));
    assert_eq!(web_session(&v17), expected);
    assert_eq!(web_session(&v16), expected);
    assert!(
        t_accepted(&v17, "lbp"),
        "the v1.7 policy is Accepted at its Service"
    );
}

fn t_accepted(t: &Translation, policy: &str) -> bool {
    ancestor(t, policy, "web")
        .condition("Accepted")
        .unwrap()
        .is_true()
}

#[test]
fn every_v1_7_field_reaches_the_core() {
    let s = web_session(&gep_policy(
        "    absoluteTimeout: 2h\n    cookie:\n      name: my-session\n      path: /api\n      \
         lifetimeType: Permanent\n",
    ));
    assert_eq!(
        s,
        SessionPersistence::cookie(Some("my-session".into()))
            .with_path("/api")
            .with_lifetime(CookieLifetime::Permanent)
            .with_absolute_timeout(Some(Duration::from_secs(7200)))
    );
    // The path defaults to "/" (the spec's default), the lifetime to Session.
    let s = web_session(&gep_policy("    cookie: { name: c }\n"));
    assert_eq!(
        s.mode(),
        &SessionMode::Cookie {
            lifetime: CookieLifetime::Session,
            path: "/".into()
        }
    );
    let s = web_session(&gep_policy(
        "    type: Header\n    header: { name: X-Sticky }\n",
    ));
    assert_eq!(s, SessionPersistence::header(Some("X-Sticky".into())));
    // The v1.6 shape still reads everything it has (idleTimeout too).
    let s = web_session(&gep_policy(
        "    sessionName: old\n    absoluteTimeout: 1h\n    idleTimeout: 5m\n    \
         cookieConfig: { lifetimeType: Permanent }\n",
    ));
    assert_eq!(
        s,
        SessionPersistence::cookie(Some("old".into()))
            .with_lifetime(CookieLifetime::Permanent)
            .with_absolute_timeout(Some(Duration::from_secs(3600)))
            .with_idle_timeout(Some(Duration::from_secs(300)))
    );
}

#[test]
fn contradictions_and_unknown_keys_refuse_the_policy_naming_the_field() {
    for (session, field) in [
        (
            "{ type: Header, cookie: { name: c } }",
            "spec.sessionPersistence.cookie",
        ),
        (
            "{ header: { name: X-S } }",
            "spec.sessionPersistence.header",
        ),
        (
            "{ type: Cookie, header: { name: X-S } }",
            "spec.sessionPersistence.header",
        ),
        (
            "{ sessionName: a, cookie: { name: b } }",
            "spec.sessionPersistence.sessionName",
        ),
        (
            "{ type: Header, sessionName: a, header: { name: X-B } }",
            "spec.sessionPersistence.sessionName",
        ),
        (
            "{ cookieConfig: { lifetimeType: Session }, cookie: { name: b } }",
            "spec.sessionPersistence.cookieConfig",
        ),
        (
            "{ type: Header, cookieConfig: { lifetimeType: Session } }",
            "spec.sessionPersistence.cookieConfig",
        ),
        (
            "{ cookie: { lifetimeType: Permanent } }",
            "spec.sessionPersistence.absoluteTimeout",
        ),
        (
            "{ type: Header, header: {} }",
            "spec.sessionPersistence.header.name",
        ),
        (
            "{ cookie: { name: \"a b\" } }",
            "spec.sessionPersistence.cookie.name",
        ),
        (
            "{ type: Header, header: { name: \"x:y\" } }",
            "spec.sessionPersistence.header.name",
        ),
        (
            "{ cookie: { path: api } }",
            "spec.sessionPersistence.cookie.path",
        ),
        (
            "{ cookie: { name: c, domain: example.com } }",
            "spec.sessionPersistence.cookie.domain",
        ),
        ("{ sessionNmae: c }", "spec.sessionPersistence.sessionNmae"),
        (
            "{ type: Header, header: { name: X-S, prefix: a } }",
            "spec.sessionPersistence.header.prefix",
        ),
        (
            "{ cookieConfig: { lifetimeType: Session, maxAge: 1 } }",
            "spec.sessionPersistence.cookieConfig.maxAge",
        ),
        (
            "{ cookie: { name: c } }\n  loadBalancer: { type: Random }",
            "spec.loadBalancer",
        ),
    ] {
        let t = run(&with_route(
            "",
            &x_policy(
                "lbp",
                "[{ group: \"\", kind: Service, name: web }]",
                &format!("  sessionPersistence: {session}\n"),
            ),
        ));
        let fields: Vec<&str> = t.errors().iter().map(|e| e.field()).collect();
        assert!(fields.contains(&field), "{session}: {fields:?}");
        let c = t
            .status("XBackendTrafficPolicy", Some("default"), "lbp")
            .unwrap()
            .condition("Accepted")
            .unwrap()
            .clone();
        assert_eq!((c.is_true(), c.reason()), (false, "Invalid"), "{session}");
        assert!(c.message().contains(field), "{session}: {}", c.message());
        assert!(
            rule(&t, "r").backends[0].session.is_none(),
            "{session}: refused whole"
        );
    }
}

#[test]
fn the_geps_v1_7_inline_example_is_read() {
    // GEP-1619 at v1.7, "Traffic Splitting with route rule inline sessionPersistence".
    let t = run(&with_route(
        "    sessionPersistence:\n      type: Cookie\n      cookie:\n        name: split-route-cookie\n",
        "",
    ));
    assert!(t.errors().is_empty(), "{:?}", t.errors());
    assert_eq!(
        rule(&t, "r").policy.session,
        Some(SessionPersistence::cookie(Some(
            "split-route-cookie".into()
        )))
    );
    let t = run(&with_route(
        "    sessionPersistence:\n      absoluteTimeout: 1h\n      idleTimeout: 1m\n      \
         cookie: { name: c, path: /, lifetimeType: Permanent }\n",
        "",
    ));
    assert_eq!(
        rule(&t, "r").policy.session,
        Some(
            SessionPersistence::cookie(Some("c".into()))
                .with_lifetime(CookieLifetime::Permanent)
                .with_absolute_timeout(Some(Duration::from_secs(3600)))
                .with_idle_timeout(Some(Duration::from_secs(60)))
        )
    );
    let t = run(&with_route(
        "    sessionPersistence: { type: Header, header: { name: X-Sticky } }\n",
        "",
    ));
    assert_eq!(
        rule(&t, "r").policy.session,
        Some(SessionPersistence::header(Some("X-Sticky".into())))
    );
}

#[test]
fn inline_v1_7_contradictions_and_cookie_paths_are_load_errors_naming_the_field() {
    for (session, field) in [
        (
            "{ cookie: { name: c, path: /api } }",
            "spec.rules[0].sessionPersistence.cookie.path",
        ),
        (
            "{ type: Header, cookie: { name: c } }",
            "spec.rules[0].sessionPersistence.cookie",
        ),
        (
            "{ header: { name: X-S } }",
            "spec.rules[0].sessionPersistence.header",
        ),
        (
            "{ sessionName: a, cookie: { name: b } }",
            "spec.rules[0].sessionPersistence.sessionName",
        ),
        (
            "{ cookieConfig: { lifetimeType: Session }, cookie: {} }",
            "spec.rules[0].sessionPersistence.cookieConfig",
        ),
        (
            "{ cookie: { name: c, domain: d } }",
            "spec.rules[0].sessionPersistence.cookie.domain",
        ),
        (
            "{ cookie: { lifetimeType: Forever } }",
            "spec.rules[0].sessionPersistence.cookie.lifetimeType",
        ),
        (
            "{ cookie: { name: \"a b\" } }",
            "spec.rules[0].sessionPersistence.cookie.name",
        ),
        (
            "{ cookie: { lifetimeType: Permanent } }",
            "spec.rules[0].sessionPersistence.absoluteTimeout",
        ),
    ] {
        let yaml = with_route(&format!("    sessionPersistence: {session}\n"), "");
        let errors = ResourceSet::from_documents([("fixture.yaml", yaml.as_str())])
            .err()
            .unwrap_or_else(|| panic!("{session}: no load error"));
        let fields: Vec<String> = errors.iter().map(|e| format!("{e}")).collect();
        assert!(
            fields.iter().any(|f| f.contains(field)),
            "{session}: {fields:?}"
        );
    }
}
