use std::net::SocketAddr;
use std::sync::Arc;

use gatekit_core::access::AccessPolicy;
use gatekit_core::ratelimit::Cidr;
use gatekit_core::{Backend, Body, BoxError, ConnectionInfo, ErrorKind, error_response};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::json;

use super::*;
use crate::VerifiedClaims;

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn from(addr: &str) -> Request<Body> {
    let remote: SocketAddr = addr.parse().unwrap();
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.extensions_mut().insert(ConnectionInfo::new(
        remote,
        "127.0.0.1:8080".parse().unwrap(),
        false,
    ));
    req
}

fn with_claims(mut req: Request<Body>, provider: &str, claims: serde_json::Value) -> Request<Body> {
    let serde_json::Value::Object(map) = claims else {
        panic!("claims must be an object")
    };
    req.extensions_mut().insert(VerifiedClaims {
        provider: provider.into(),
        claims: Arc::new(map),
    });
    req
}

fn action(config: &AuthzConfig, req: &Request<Body>) -> Action {
    config.decide(req).0
}

#[test]
fn ipv4_and_ipv6_ranges_match_the_client_address_including_mapped_ipv4() {
    let config = AuthzConfig::allow_cidrs([cidr("10.1.0.0/16"), cidr("2001:db8::/32")]);
    assert_eq!(action(&config, &from("10.1.200.3:5000")), Action::Allow);
    assert_eq!(action(&config, &from("10.2.0.1:5000")), Action::Deny);
    assert_eq!(
        action(&config, &from("[2001:db8:ff::1]:443")),
        Action::Allow
    );
    assert_eq!(action(&config, &from("[2001:db9::1]:443")), Action::Deny);
    // An IPv4 client on a dual-stack socket shows up IPv4-mapped: it is its IPv4 address.
    assert_eq!(action(&config, &from("[::ffff:10.1.0.9]:1")), Action::Allow);
    let no_conn = Request::get("/").body(Body::empty()).unwrap();
    assert_eq!(
        action(&config, &no_conn),
        Action::Deny,
        "an unknown client address never matches a CIDR principal"
    );
}

#[test]
fn a_deny_list_refuses_its_ranges_and_lets_the_rest_through() {
    let config = AuthzConfig::deny_cidrs([cidr("192.0.2.0/24")]);
    assert_eq!(action(&config, &from("192.0.2.77:1")), Action::Deny);
    assert_eq!(action(&config, &from("198.51.100.1:1")), Action::Allow);
}

#[test]
fn the_first_matching_rule_decides_and_later_rules_are_not_consulted() {
    let config = AuthzConfig::new(Action::Allow)
        .with_rule(AuthzRule::new(
            Action::Allow,
            Principal::default().with_client_cidrs([cidr("10.0.0.5/32")]),
        ))
        .with_rule(AuthzRule::new(
            Action::Deny,
            Principal::default().with_client_cidrs([cidr("10.0.0.0/8")]),
        ));
    assert_eq!(config.decide(&from("10.0.0.5:1")), (Action::Allow, Some(0)));
    assert_eq!(config.decide(&from("10.0.0.6:1")), (Action::Deny, Some(1)));
    assert_eq!(config.decide(&from("11.0.0.6:1")), (Action::Allow, None));

    // Same rules, order swapped: the broad deny now shadows the narrow allow.
    let swapped = AuthzConfig::new(Action::Allow)
        .with_rule(config.rules()[1].clone())
        .with_rule(config.rules()[0].clone());
    assert_eq!(swapped.decide(&from("10.0.0.5:1")), (Action::Deny, Some(0)));
}

#[test]
fn the_default_action_is_deny_and_applies_when_no_rule_matches() {
    assert_eq!(AuthzConfig::default().default_action(), Action::Deny);
    assert_eq!(
        action(&AuthzConfig::default(), &from("10.0.0.1:1")),
        Action::Deny
    );
    assert_eq!(
        action(&AuthzConfig::new(Action::Allow), &from("10.0.0.1:1")),
        Action::Allow
    );
}

#[test]
fn methods_limit_a_rule() {
    let config = AuthzConfig::new(Action::Allow).with_rule(
        AuthzRule::new(Action::Deny, Principal::default()).with_methods([Method::DELETE]),
    );
    let mut req = from("10.0.0.1:1");
    assert_eq!(action(&config, &req), Action::Allow);
    *req.method_mut() = Method::DELETE;
    assert_eq!(action(&config, &req), Action::Deny);
}

#[test]
fn jwt_claims_scopes_and_provider_must_all_match() {
    let admins = JwtPrincipal::default()
        .with_provider("corp")
        .with_claim(ClaimMatch::new("org.team", ["platform", "sre"]))
        .with_claim(
            ClaimMatch::new("groups", ["admins"]).with_value_type(ClaimValueType::StringArray),
        )
        .with_scope("write")
        .with_scope("read");
    let config = AuthzConfig::new(Action::Deny).with_rule(AuthzRule::new(
        Action::Allow,
        Principal::default().with_jwt(admins),
    ));
    let good = json!({
        "sub": "ann",
        "org": {"team": "sre"},
        "groups": ["dev", "admins"],
        "scope": "read write openid",
    });
    let req = with_claims(from("10.0.0.1:1"), "corp", good.clone());
    assert_eq!(action(&config, &req), Action::Allow);

    // `scp` as an array grants scopes too.
    let mut scp = good.clone();
    scp.as_object_mut().unwrap().remove("scope");
    scp["scp"] = json!(["read", "write"]);
    assert_eq!(
        action(&config, &with_claims(from("10.0.0.1:1"), "corp", scp)),
        Action::Allow
    );

    let refused = |claims: serde_json::Value, provider: &str, why: &str| {
        let req = with_claims(from("10.0.0.1:1"), provider, claims);
        assert_eq!(action(&config, &req), Action::Deny, "{why}");
    };
    refused(good.clone(), "other", "another provider verified the token");
    let mut c = good.clone();
    c["scope"] = json!("read writer");
    refused(c, "corp", "a missing scope (no prefix matching)");
    let mut c = good.clone();
    c["org"]["team"] = json!("dev");
    refused(c, "corp", "a nested claim with another value");
    let mut c = good.clone();
    c["groups"] = json!("admins");
    refused(c, "corp", "a string where an array is expected");
    let mut c = good;
    c["org"] = json!("sre");
    refused(c, "corp", "a path through a non-object");
}

#[test]
fn a_request_without_verified_claims_never_matches_a_jwt_principal() {
    // Even a deny rule: without claims it does not match, so the default decides.
    let config = AuthzConfig::new(Action::Allow).with_rule(AuthzRule::new(
        Action::Deny,
        Principal::default().with_jwt(JwtPrincipal::default().with_scope("banned")),
    ));
    assert_eq!(action(&config, &from("10.0.0.1:1")), Action::Allow);
    let allow = AuthzConfig::new(Action::Deny).with_rule(AuthzRule::new(
        Action::Allow,
        Principal::default().with_jwt(JwtPrincipal::default()),
    ));
    assert_eq!(action(&allow, &from("10.0.0.1:1")), Action::Deny);
    let req = with_claims(from("10.0.0.1:1"), "any", json!({"sub": "x"}));
    assert_eq!(
        action(&allow, &req),
        Action::Allow,
        "claims present, no conditions"
    );
}

#[test]
fn headers_all_must_match_one_of_their_values_and_parts_are_anded() {
    let principal = Principal::default()
        .with_client_cidrs([cidr("10.0.0.0/8")])
        .with_header(HeaderMatch::new(
            HeaderName::from_static("x-user"),
            [
                HeaderValue::from_static("ann"),
                HeaderValue::from_static("bob"),
            ],
        ))
        .with_header(HeaderMatch::new(
            HeaderName::from_static("x-tier"),
            [HeaderValue::from_static("gold")],
        ));
    let config = AuthzConfig::new(Action::Deny).with_rule(AuthzRule::new(Action::Allow, principal));
    let req = |addr: &str, headers: &[(&'static str, &'static str)]| {
        let mut req = from(addr);
        for (k, v) in headers {
            req.headers_mut()
                .append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        req
    };
    let ok = [("x-user", "bob"), ("x-tier", "gold")];
    assert_eq!(action(&config, &req("10.9.9.9:1", &ok)), Action::Allow);
    assert_eq!(
        action(&config, &req("11.0.0.1:1", &ok)),
        Action::Deny,
        "headers match but the address does not"
    );
    assert_eq!(
        action(&config, &req("10.9.9.9:1", &[("x-user", "bob")])),
        Action::Deny,
        "one header missing"
    );
    assert_eq!(
        action(
            &config,
            &req("10.9.9.9:1", &[("x-user", "Bob"), ("x-tier", "gold")])
        ),
        Action::Deny,
        "values compare exactly"
    );
    assert_eq!(
        action(
            &config,
            &req(
                "10.9.9.9:1",
                &[("x-user", "eve"), ("x-user", "ann"), ("x-tier", "gold")]
            )
        ),
        Action::Allow,
        "any of a repeated header's values"
    );
}

#[tokio::test]
async fn the_policy_refuses_with_403_forbidden_and_passes_allowed_requests_on() {
    let app = Backend::new(tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, BoxError>(Response::new(Body::from("app")))
    }));
    let policy = AuthzPolicy::new(AuthzConfig::allow_cidrs([cidr("10.0.0.0/8")]));
    let guarded = policy.layer(app);

    let rsp = guarded.send(from("10.0.0.1:1")).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::OK);

    let err = guarded.send(from("8.8.8.8:1")).await.unwrap_err();
    assert_eq!(gatekit_core::classify(&*err), ErrorKind::Forbidden);
    let rsp = error_response(&*err);
    assert_eq!(rsp.status(), StatusCode::FORBIDDEN);
    assert_eq!(rsp.headers()["x-gatekit-error"], "forbidden");
}
