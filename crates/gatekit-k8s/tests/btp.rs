//! Envoy Gateway `BackendTrafficPolicy`: the course module's examples parse and translate
//! into gatekit-core's configs; route policies replace or merge with Gateway ones
//! (`mergeType`); gatekit's TrafficPolicy wins a shared field; unimplemented fields refuse
//! the policy in status; invalid values are load errors.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gatekit_core::breaker::CircuitBreakerConfig;
use gatekit_core::ratelimit::{ClientMatch, KeyPart, Quota, ValueMatch, ValueRegex};
use gatekit_core::route::{Route, Rule};
use gatekit_k8s::types::BackendPolicySpec;
use gatekit_k8s::types::policy::{
    Algorithm, HashKey, HashKeyType, Locality, ProbeType, StatusRange,
};
use gatekit_k8s::{ManifestError, ResourceSet, TranslateOptions, Translation, Warning, translate};
use http::{HeaderName, StatusCode};

fn load(yaml: &str) -> (ResourceSet, Vec<Warning>) {
    ResourceSet::from_documents([("fixture.yaml", yaml)]).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn run(yaml: &str) -> Translation {
    translate(&load(yaml).0, &TranslateOptions::default())
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

/// (Accepted, reason, message) of a BackendTrafficPolicy.
fn accepted(t: &Translation, name: &str) -> (bool, String, String) {
    let s = t
        .status("BackendTrafficPolicy", Some("default"), name)
        .unwrap_or_else(|| panic!("no status for {name}: {:#?}", t.statuses()));
    let c = s.condition("Accepted").unwrap();
    (c.is_true(), c.reason().to_owned(), c.message().to_owned())
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
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web }
spec:
  parentRefs: [{ name: gw }]
  rules:
  - backendRefs: [{ name: web, port: 80 }]
"#;

/// The course module's policy: a per-API-key limit plus a default limit, a circuit
/// breaker, a retry and timeouts, with its two abbreviations (load warnings).
const COURSE: &str = r#"
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: course }
spec:
  targetRefs:
  - group: gateway.networking.k8s.io
    kind: HTTPRoute
    name: web
  rateLimit:
    type: Local
    local:
      rules:
      - clientSelectors:
        - headers:
          - name: x-api-key
            type: Distinct
        limit: { requests: 10, unit: Minute }
      - limit: { requests: 100, unit: Minute }
  circuitBreaker:
    maxConnections: 64
    maxPendingRequests: 32
    maxRequests: 128
    maxParallelRetries: 4
  retry:
    numRetries: 3
    retryOn: [5xx, connect-failure, reset]
    perRetry:
      timeout: 2s
      backOff: { baseInterval: 100ms, maxInterval: 1s }
  timeout:
    http: { requestTimeout: 10s }
"#;

#[test]
fn the_course_policy_parses_and_translates() {
    let yaml = format!("{BASE}---{COURSE}");
    let (set, warnings) = load(&yaml);
    let messages: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("spec.circuitBreaker.maxRequests")
                && m.contains("maxParallelRequests")),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("spec.retry.retryOn") && m.contains("retryOn.triggers")),
        "{messages:#?}"
    );
    assert_eq!(set.backend_traffic_policies.len(), 1);
    let t = translate(&set, &TranslateOptions::default());
    assert_eq!(
        accepted(&t, "course"),
        (true, "Accepted".into(), String::new())
    );
    let r = rule(&t, "web");

    let limits = &r.policy.rate_limits;
    assert_eq!(limits.len(), 2, "{limits:#?}");
    assert_eq!(
        limits[0].key,
        [KeyPart::Header(HeaderName::from_static("x-api-key"))]
    );
    assert_eq!(limits[0].quota, Quota::new(10, Duration::from_secs(60)));
    assert!(
        limits[1].key.is_empty(),
        "the default limit: one shared bucket"
    );
    assert_eq!(limits[1].quota, Quota::new(100, Duration::from_secs(60)));
    assert_eq!(limits[0].name, "default/course/0");
    assert!(t.global_rate_limits().is_empty());

    let mut breaker = CircuitBreakerConfig::default();
    breaker.max_connections = Some(64);
    breaker.max_pending_requests = Some(32);
    breaker.max_parallel_requests = Some(128);
    breaker.max_parallel_retries = Some(4);
    assert_eq!(r.backends[0].breaker.as_deref(), Some(&breaker));

    let retry = r.policy.retry.as_ref().unwrap();
    assert_eq!(retry.attempts, 3);
    assert!(retry.on.server_error && retry.on.connect_failure && retry.on.reset);
    assert!(!retry.on.gateway_error);
    assert_eq!(retry.backoff.base, Duration::from_millis(100));
    assert_eq!(retry.backoff.max, Duration::from_secs(1));
    assert_eq!(r.timeouts.backend_request, Some(Duration::from_secs(2)));
    assert_eq!(r.timeouts.request, Some(Duration::from_secs(10)));
}

#[test]
fn envoy_gateways_own_spelling_reads_without_warnings_and_defaults_follow_it() {
    let yaml = format!(
        r#"{BASE}---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{ name: eg }}
spec:
  targetRef: {{ group: gateway.networking.k8s.io, kind: Gateway, name: gw }}
  circuitBreaker: {{ maxParallelRequests: 5 }}
  retry:
    retryOn: {{ triggers: [retriable-status-codes], httpStatusCodes: [429, 503] }}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{ name: defaults }}
spec:
  targetRefs: [{{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: other }}]
  retry: {{}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: other }}
spec:
  parentRefs: [{{ name: gw }}]
  hostnames: [other.example]
  rules:
  - backendRefs: [{{ name: web, port: 80 }}]
"#
    );
    let (set, warnings) = load(&yaml);
    assert!(warnings.is_empty(), "{warnings:?}");
    let t = translate(&set, &TranslateOptions::default());
    let r = rule(&t, "web");
    let retry = r.policy.retry.as_ref().unwrap();
    assert_eq!(retry.attempts, 2);
    assert_eq!(
        retry.on.statuses,
        [
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE
        ]
    );
    assert_eq!(
        r.backends[0]
            .breaker
            .as_ref()
            .and_then(|b| b.max_parallel_requests),
        Some(5)
    );
    // Envoy Gateway's default retryOn.
    let d = rule(&t, "other").policy.retry.as_ref().unwrap();
    assert!(d.on.connect_failure && d.on.unsent);
    assert_eq!(d.on.statuses, [StatusCode::SERVICE_UNAVAILABLE]);
    assert_eq!(d.on.grpc, [14, 1]);
}

const GATEWAY_BTP: &str = r#"
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: gateway }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: gw }]
  retry: { numRetries: 4 }
  timeout: { http: { requestTimeout: 30s } }
"#;

fn route_btp(merge: &str) -> String {
    format!(
        r#"
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{ name: route }}
spec:
  targetRefs: [{{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: web }}]
  {merge}
  retry: {{ numRetries: 1 }}
  rateLimit:
    type: Local
    local: {{ rules: [{{ limit: {{ requests: 5, unit: Second }} }}] }}
"#
    )
}

#[test]
fn a_route_policy_replaces_the_gateways_unless_merge_type_is_set() {
    let t = run(&format!("{BASE}---{GATEWAY_BTP}---{}", route_btp("")));
    let r = rule(&t, "web");
    assert_eq!(r.policy.retry.as_ref().unwrap().attempts, 1);
    assert_eq!(r.policy.rate_limits.len(), 1);
    assert_eq!(
        r.timeouts.request, None,
        "replaced: the Gateway's timeout is gone"
    );

    let t = run(&format!(
        "{BASE}---{GATEWAY_BTP}---{}",
        route_btp("mergeType: StrategicMerge")
    ));
    let r = rule(&t, "web");
    assert_eq!(
        r.policy.retry.as_ref().unwrap().attempts,
        1,
        "the route's field wins"
    );
    assert_eq!(r.policy.rate_limits.len(), 1);
    assert_eq!(
        r.timeouts.request,
        Some(Duration::from_secs(30)),
        "merged: the Gateway's timeout stays"
    );
    assert!(accepted(&t, "gateway").0 && accepted(&t, "route").0);
}

#[test]
fn the_routes_own_timeout_and_a_gatekit_traffic_policy_win() {
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw }}
spec:
  gatewayClassName: gatekit
  listeners: [{{ name: http, port: 80, protocol: HTTP }}]
---
apiVersion: v1
kind: Service
metadata: {{ name: web }}
spec: {{ ports: [{{ port: 80 }}] }}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: web }}
spec:
  parentRefs: [{{ name: gw }}]
  rules:
  - backendRefs: [{{ name: web, port: 80 }}]
    timeouts: {{ request: 3s }}
---
apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: {{ name: gk }}
spec:
  targetRefs: [{{ kind: HTTPRoute, name: web }}]
  retry: {{ attempts: 5 }}
---{}"#,
        route_btp("")
    );
    let t = run(&yaml);
    let r = rule(&t, "web");
    assert_eq!(
        r.policy.retry.as_ref().unwrap().attempts,
        5,
        "gatekit's retry"
    );
    assert_eq!(
        r.policy.rate_limits.len(),
        1,
        "the BTP's other field applies"
    );
    assert_eq!(r.timeouts.request, Some(Duration::from_secs(3)));
    let (ok, _, message) = accepted(&t, "route");
    assert!(ok);
    assert!(
        message.contains("retry not applied, the TrafficPolicy default/gk sets it"),
        "{message}"
    );
}

#[test]
fn unimplemented_fields_refuse_the_policy_naming_them() {
    let yaml = format!(
        r#"{BASE}---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{ name: partial }}
spec:
  targetRefs: [{{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: web }}]
  faultInjection: {{ abort: {{ httpStatus: 503 }} }}
  rateLimit:
    type: Local
    local:
      rules:
      - clientSelectors:
        - headers: [{{ name: x-tier, type: Exact, value: free }}]
          methods: [{{ value: GET }}]
          path: {{ value: /api }}
          sourceCIDR: {{ type: Exact, value: 10.0.0.0/8, invert: true }}
        cost: {{ request: {{ from: Number, number: 2 }} }}
        limit: {{ requests: 1, unit: Second }}
"#
    );
    let t = run(&yaml);
    let (ok, reason, message) = accepted(&t, "partial");
    assert!(!ok);
    assert_eq!(reason, "Unsupported");
    for field in [
        "spec.faultInjection",
        "spec.rateLimit.local.rules[0].clientSelectors[0].methods",
        "spec.rateLimit.local.rules[0].clientSelectors[0].path",
        "spec.rateLimit.local.rules[0].clientSelectors[0].sourceCIDR.invert",
        "spec.rateLimit.local.rules[0].cost",
    ] {
        assert!(message.contains(field), "{field} not in {message}");
    }
    assert!(
        rule(&t, "web").policy.rate_limits.is_empty(),
        "not half applied"
    );
    assert!(
        !message.contains("headers[0]"),
        "Exact is implemented: {message}"
    );
}

#[test]
fn a_global_rate_limit_runs_per_replica_and_says_so() {
    let yaml = format!(
        r#"{BASE}---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{ name: global }}
spec:
  targetRefs: [{{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: web }}]
  rateLimit:
    type: Global
    global:
      rules:
      - clientSelectors: [{{ sourceCIDR: {{ type: Distinct, value: 0.0.0.0/0 }} }}]
        limit: {{ requests: 7, unit: Hour }}
"#
    );
    let t = run(&yaml);
    let limits = &rule(&t, "web").policy.rate_limits;
    assert_eq!(limits[0].key, [KeyPart::ClientIp]);
    assert_eq!(
        limits[0].matches,
        [ClientMatch::source_cidr("0.0.0.0/0".parse().unwrap())]
    );
    assert!(t.global_rate_limits().contains("default/global/0"));
    let (ok, _, message) = accepted(&t, "global");
    assert!(ok);
    assert!(
        message.contains("no Redis configured: limits are per replica"),
        "{message}"
    );
}

#[test]
fn invalid_values_are_load_errors() {
    let yaml = r#"apiVersion: v1
kind: ConfigMap
metadata: { name: cm }
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: bad }
spec:
  targetRefs: [{ group: example.com, kind: HTTPRoute, name: web }]
  rateLimit:
    type: Global
    local: { rules: [] }
  circuitBreaker: { maxConnections: -1 }
  retry:
    numRetries: -2
  timeout: { http: { requestTimeout: soon } }
"#;
    let errors: Vec<ManifestError> = match ResourceSet::from_documents([("p.yaml", yaml)]) {
        Ok(_) => panic!("loaded"),
        Err(e) => e,
    };
    let fields: Vec<&str> = errors.iter().filter_map(ManifestError::field).collect();
    assert_eq!(
        fields,
        [
            "spec.targetRefs[0].group",
            "spec.rateLimit",
            "spec.circuitBreaker.maxConnections",
            "spec.retry.numRetries",
            "spec.timeout.http.requestTimeout",
        ],
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .all(|e| e.document() == Some(1) && e.file() == "p.yaml")
    );

    let yaml = r#"apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: bad }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: web }]
  rateLimit:
    type: Local
    local:
      rules:
      - clientSelectors: [{ sourceCIDR: { type: Distinct, value: 10.0.0.0/40 } }]
        limit: { requests: 0, unit: Second }
"#;
    let errors = ResourceSet::from_documents([("p.yaml", yaml)]).unwrap_err();
    let fields: Vec<&str> = errors.iter().filter_map(ManifestError::field).collect();
    assert_eq!(
        fields,
        [
            "spec.rateLimit.local.rules[0].clientSelectors[0].sourceCIDR.value",
            "spec.rateLimit.local.rules[0].limit.requests",
        ]
    );

    // The older singular targetRef is checked under its own name.
    let yaml = "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\nmetadata: { name: bad }\nspec:\n  targetRef: { group: example.com, kind: Gateway, name: gw }\n";
    let errors = ResourceSet::from_documents([("p.yaml", yaml)]).unwrap_err();
    let fields: Vec<&str> = errors.iter().filter_map(ManifestError::field).collect();
    assert_eq!(fields, ["spec.targetRef.group"]);
}

#[test]
fn an_unknown_trigger_is_a_load_error() {
    let yaml = "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\nmetadata: { name: bad }\nspec:\n  targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: gw }]\n  retry: { retryOn: { triggers: [sometimes] } }\n";
    let errors = ResourceSet::from_documents([("p.yaml", yaml)]).unwrap_err();
    let fields: Vec<&str> = errors.iter().filter_map(ManifestError::field).collect();
    assert_eq!(fields, ["spec.retry.retryOn"], "{errors:?}");
}

/// A BackendTrafficPolicy on the `web` route with these local rate-limit rules.
fn rules_policy(rules: &str) -> String {
    format!(
        r#"{BASE}---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{ name: selectors }}
spec:
  targetRefs: [{{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: web }}]
  rateLimit:
    type: Local
    local:
      rules:
{rules}"#
    )
}

#[test]
fn every_client_selector_kind_translates_and_is_accepted() {
    let yaml = rules_policy(
        r#"      - clientSelectors:
        - headers:
          - { name: x-tier, value: free }
          - { name: x-user, type: RegularExpression, value: "user-[0-9]+" }
          - { name: x-internal, type: Exact, value: "yes", invert: true }
          - { name: x-api-key, type: Distinct }
        - sourceCIDR: { value: 10.0.0.0/8 }
        limit: { requests: 5, unit: Second }
      - clientSelectors:
        - sourceCIDR: { type: Distinct, value: "2001:db8::/32" }
        limit: { requests: 6, unit: Minute }
      - clientSelectors:
        - headers: [{ name: x-bot, type: RegularExpression, value: ".*crawler.*", invert: true }]
        limit: { requests: 7, unit: Hour }
"#,
    );
    let t = run(&yaml);
    let (ok, _, message) = accepted(&t, "selectors");
    assert!(ok, "{message}");
    let limits = &rule(&t, "web").policy.rate_limits;
    assert_eq!(limits.len(), 3);

    let h = HeaderName::from_static;
    // Both clientSelectors of rule 0 must hold: their conditions form one list.
    assert_eq!(
        limits[0].matches,
        [
            ClientMatch::header(
                h("x-tier"),
                ValueMatch::Exact(http::HeaderValue::from_static("free"))
            ),
            ClientMatch::header(
                h("x-user"),
                ValueMatch::Regex(ValueRegex::new("user-[0-9]+").unwrap())
            ),
            ClientMatch::header(
                h("x-internal"),
                ValueMatch::Exact(http::HeaderValue::from_static("yes"))
            )
            .with_invert(true),
            ClientMatch::source_cidr("10.0.0.0/8".parse().unwrap()),
        ]
    );
    assert_eq!(limits[0].key, [KeyPart::Header(h("x-api-key"))]);
    assert_eq!(limits[0].quota, Quota::new(5, Duration::from_secs(1)));

    assert_eq!(
        limits[1].matches,
        [ClientMatch::source_cidr("2001:db8::/32".parse().unwrap())]
    );
    assert_eq!(limits[1].key, [KeyPart::ClientIp]);

    assert_eq!(
        limits[2].matches,
        [ClientMatch::header(
            h("x-bot"),
            ValueMatch::Regex(ValueRegex::new(".*crawler.*").unwrap())
        )
        .with_invert(true)]
    );
    assert!(limits[2].key.is_empty());
}

#[test]
fn invalid_client_selectors_are_load_errors_naming_the_field() {
    let yaml = rules_policy(
        r#"      - clientSelectors:
        - headers:
          - { name: x-a, type: RegularExpression, value: "user-(" }
          - { name: x-b, type: Exact }
          - { name: x-c, type: RegularExpression }
          - { name: x-d, type: Distinct, invert: true }
          - { name: x-e, type: Distinct, value: "v" }
          - { name: x-f, value: "bad\u0001value" }
        - sourceCIDR: { type: Exact, value: 10.0.0.0/33 }
        - sourceCIDR: { type: Distinct, value: "not-a-cidr" }
        limit: { requests: 1, unit: Second }
"#,
    );
    let errors = ResourceSet::from_documents([("p.yaml", yaml.as_str())]).unwrap_err();
    let fields: Vec<&str> = errors.iter().filter_map(ManifestError::field).collect();
    let s = "spec.rateLimit.local.rules[0].clientSelectors";
    assert_eq!(
        fields,
        [
            format!("{s}[0].headers[0].value"),
            format!("{s}[0].headers[1].value"),
            format!("{s}[0].headers[2].value"),
            format!("{s}[0].headers[3].invert"),
            format!("{s}[0].headers[4].value"),
            format!("{s}[0].headers[5].value"),
            format!("{s}[1].sourceCIDR.value"),
            format!("{s}[2].sourceCIDR.value"),
        ],
        "{errors:#?}"
    );
    let text = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("invalid regular expression"), "{text}");
    assert!(
        text.contains("invert cannot be used with type: Distinct"),
        "{text}"
    );
    assert!(text.contains("is required with type: Exact"), "{text}");
    assert!(text.contains("\"not-a-cidr\" is not a CIDR"), "{text}");
}

// === loadBalancer, healthCheck, slowStart: per-Service upstream settings ===

/// BASE plus a policy named `lb` on the route `web` with `spec` (YAML lines at spec
/// indentation).
fn with_upstream(spec: &str) -> String {
    format!(
        "{BASE}---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\nmetadata: {{ name: lb }}\nspec:\n  targetRefs: [{{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: web }}]\n{spec}"
    )
}

/// The upstream policy of Service default/web port 80.
fn web_policy(t: &Translation) -> Option<BackendPolicySpec> {
    t.upstreams()
        .get("default/web:80")
        .unwrap_or_else(|| panic!("no upstream: {:#?}", t.upstreams()))
        .policy()
        .cloned()
}

/// The applied upstream policy of `spec` on Service web (the policy must be Accepted
/// with no problems).
fn upstream_of(spec: &str) -> BackendPolicySpec {
    let t = run(&with_upstream(spec));
    let (ok, _, message) = accepted(&t, "lb");
    assert!(ok && message.is_empty(), "{message}");
    web_policy(&t).unwrap()
}

fn balancer(p: &BackendPolicySpec) -> (Option<Algorithm>, Option<HashKey>) {
    let lb = p.load_balancer.as_ref().unwrap();
    (lb.algorithm, lb.hash_key.clone())
}

fn key(type_: HashKeyType, name: Option<&str>) -> Option<HashKey> {
    Some(HashKey {
        type_,
        name: name.map(str::to_owned),
    })
}

#[test]
fn each_load_balancer_type_becomes_the_services_algorithm() {
    for (ty, algorithm) in [
        ("RoundRobin", Algorithm::RoundRobin),
        ("LeastRequest", Algorithm::LeastRequest),
        ("Random", Algorithm::Random),
    ] {
        let p = upstream_of(&format!("  loadBalancer: {{ type: {ty} }}\n"));
        assert_eq!(balancer(&p), (Some(algorithm), None), "{ty}");
        assert!(p.health_check.is_none());
    }
    for (hash, expected) in [
        ("{ type: SourceIP }", key(HashKeyType::SourceIp, None)),
        (
            "{ type: Header, header: { name: x-user } }",
            key(HashKeyType::Header, Some("x-user")),
        ),
        (
            "{ type: Headers, headers: [{ name: x-tenant }] }",
            key(HashKeyType::Header, Some("x-tenant")),
        ),
        (
            "{ type: Cookie, cookie: { name: session } }",
            key(HashKeyType::Cookie, Some("session")),
        ),
        (
            "{ type: QueryParams, queryParams: [{ name: user }] }",
            key(HashKeyType::QueryParameter, Some("user")),
        ),
    ] {
        let p = upstream_of(&format!(
            "  loadBalancer: {{ type: ConsistentHash, consistentHash: {hash} }}\n"
        ));
        assert_eq!(
            balancer(&p),
            (Some(Algorithm::ConsistentHash), expected),
            "{hash}"
        );
    }
}

#[test]
fn slow_start_zone_awareness_and_the_panic_threshold_translate() {
    let p = upstream_of(
        "  loadBalancer:\n    type: LeastRequest\n    slowStart: { window: 30s }\n    zoneAware: { preferLocal: {} }\n  healthCheck: { panicThreshold: 20 }\n",
    );
    let lb = p.load_balancer.unwrap();
    assert_eq!(lb.algorithm, Some(Algorithm::LeastRequest));
    assert_eq!(
        lb.slow_start.unwrap().window().unwrap(),
        Duration::from_secs(30)
    );
    assert_eq!(lb.locality, Some(Locality::default()));
    assert_eq!(lb.panic_threshold, Some(20));
}

#[test]
fn active_health_checks_translate_with_envoy_gateways_defaults() {
    let p = upstream_of(
        "  healthCheck:\n    active:\n      type: HTTP\n      timeout: 500ms\n      interval: 2s\n      unhealthyThreshold: 4\n      healthyThreshold: 2\n      http: { path: /healthz, method: head, hostname: probe.example, expectedStatuses: [200, 204] }\n",
    );
    let a = p.health_check.unwrap().active.unwrap();
    assert_eq!(a.type_, ProbeType::Http);
    assert_eq!(a.path.as_deref(), Some("/healthz"));
    assert_eq!(a.method.as_deref(), Some("HEAD"));
    assert_eq!(a.host.as_deref(), Some("probe.example"));
    assert_eq!(
        a.expected_statuses,
        Some(vec![
            StatusRange {
                start: 200,
                end: None
            },
            StatusRange {
                start: 204,
                end: None
            }
        ])
    );
    assert_eq!(a.timeout().unwrap(), Some(Duration::from_millis(500)));
    assert_eq!(a.interval().unwrap(), Some(Duration::from_secs(2)));
    assert_eq!(
        (a.unhealthy_threshold, a.healthy_threshold),
        (Some(4), Some(2))
    );

    // Omitted: Envoy Gateway's defaults (1s, 3s, 3, 1, only 200), not gatekit's.
    let p = upstream_of("  healthCheck: { active: { type: HTTP, http: { path: / } } }\n");
    let a = p.health_check.unwrap().active.unwrap();
    assert_eq!(a.timeout().unwrap(), Some(Duration::from_secs(1)));
    assert_eq!(a.interval().unwrap(), Some(Duration::from_secs(3)));
    assert_eq!(
        (a.unhealthy_threshold, a.healthy_threshold),
        (Some(3), Some(1))
    );
    assert_eq!(
        a.expected_statuses,
        Some(vec![StatusRange {
            start: 200,
            end: None
        }])
    );
    assert_eq!(a.method, None, "GET");

    let p = upstream_of("  healthCheck: { active: { type: TCP, tcp: {} } }\n");
    assert_eq!(
        p.health_check.unwrap().active.unwrap().type_,
        ProbeType::Tcp
    );
    let p = upstream_of("  healthCheck: { active: { type: GRPC, grpc: { service: billing } } }\n");
    let a = p.health_check.unwrap().active.unwrap();
    assert_eq!(a.type_, ProbeType::Grpc);
    assert_eq!(a.grpc_service.as_deref(), Some("billing"));
}

#[test]
fn passive_health_checks_translate_with_envoy_gateways_defaults() {
    let p = upstream_of(
        "  healthCheck:\n    passive:\n      consecutive5XxErrors: 7\n      consecutiveGatewayErrors: 3\n      baseEjectionTime: 1m\n      maxEjectionPercent: 50\n      splitExternalLocalOriginErrors: false\n",
    );
    let passive = p.health_check.unwrap().passive.unwrap();
    assert_eq!(passive.consecutive_5xx, Some(7));
    assert_eq!(passive.consecutive_gateway_errors, Some(3));
    assert_eq!(
        passive.base_ejection_time().unwrap(),
        Some(Duration::from_secs(60))
    );
    assert_eq!(passive.max_ejection_percent, Some(50));

    // Omitted: 5 consecutive 5xx, gateway errors not counted, 30s, 10%.
    let p = upstream_of("  healthCheck: { passive: {} }\n");
    let passive = p.health_check.unwrap().passive.unwrap();
    assert_eq!(passive.consecutive_5xx, Some(5));
    assert_eq!(passive.consecutive_gateway_errors, None);
    assert_eq!(
        passive.base_ejection_time().unwrap(),
        Some(Duration::from_secs(30))
    );
    assert_eq!(passive.max_ejection_percent, Some(10));
}

#[test]
fn performance_only_fields_are_accepted_with_a_warning_naming_them() {
    let t = run(&with_upstream(
        "  loadBalancer: { type: ConsistentHash, consistentHash: { type: SourceIP, tableSize: 65537 } }\n  healthCheck:\n    active: { type: TCP, initialJitter: 1s }\n    passive: { interval: 5s }\n",
    ));
    let (ok, _, _) = accepted(&t, "lb");
    assert!(ok);
    let s = t
        .status("BackendTrafficPolicy", Some("default"), "lb")
        .unwrap();
    let w = s.condition("Warning").expect("a Warning condition");
    assert!(w.is_true());
    for field in [
        "spec.loadBalancer.consistentHash.tableSize",
        "spec.healthCheck.active.initialJitter",
        "spec.healthCheck.passive.interval",
    ] {
        assert!(
            w.message().contains(field),
            "{field} not in {}",
            w.message()
        );
    }
    let policy = web_policy(&t).unwrap();
    assert_eq!(
        balancer(&policy),
        (
            Some(Algorithm::ConsistentHash),
            key(HashKeyType::SourceIp, None)
        )
    );
}

#[test]
fn upstream_fields_without_an_equivalent_refuse_the_policy_naming_them() {
    let t = run(&with_upstream(
        "  loadBalancer:\n    type: ConsistentHash\n    consistentHash: { type: Cookie, cookie: { name: s, ttl: 60s } }\n    endpointOverride: { extractFrom: [{ header: x-ep }] }\n  healthCheck:\n    active: { type: HTTP, http: { path: /, expectedResponse: { type: Text, text: ok } } }\n    passive: { failurePercentageThreshold: 80, splitExternalLocalOriginErrors: true }\n",
    ));
    let (ok, reason, message) = accepted(&t, "lb");
    assert!(!ok);
    assert_eq!(reason, "Unsupported");
    for field in [
        "spec.loadBalancer.consistentHash.cookie.ttl",
        "spec.loadBalancer.endpointOverride",
        "spec.healthCheck.active.http.expectedResponse",
        "spec.healthCheck.passive.failurePercentageThreshold",
        "spec.healthCheck.passive.splitExternalLocalOriginErrors: true",
    ] {
        assert!(message.contains(field), "{field} not in {message}");
    }
    assert_eq!(web_policy(&t), None, "not half applied");

    let t = run(&with_upstream(
        "  loadBalancer: { type: BackendUtilization, backendUtilization: {} }\n",
    ));
    let (ok, _, message) = accepted(&t, "lb");
    assert!(!ok);
    assert!(
        message.contains("spec.loadBalancer.type: BackendUtilization"),
        "{message}"
    );
}

#[test]
fn invalid_upstream_values_are_load_errors() {
    let yaml = r#"apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: bad }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: web }]
  loadBalancer: { type: Random, slowStart: { window: soon } }
  healthCheck:
    panicThreshold: 101
    active: { type: HTTP, unhealthyThreshold: 0 }
    passive: { maxEjectionPercent: 120 }
"#;
    let errors = ResourceSet::from_documents([("p.yaml", yaml)]).unwrap_err();
    let fields: Vec<&str> = errors.iter().filter_map(ManifestError::field).collect();
    assert_eq!(
        fields,
        [
            "spec.loadBalancer.slowStart.window",
            "spec.loadBalancer.slowStart",
            "spec.healthCheck.panicThreshold",
            "spec.healthCheck.active.unhealthyThreshold",
            "spec.healthCheck.active.http",
            "spec.healthCheck.passive.maxEjectionPercent",
        ],
        "{errors:#?}"
    );
    let yaml = "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\nmetadata: { name: bad }\nspec:\n  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: web }]\n  loadBalancer: { type: ConsistentHash, consistentHash: { type: Header }, zoneAware: { preferLocal: {} } }\n";
    let errors = ResourceSet::from_documents([("p.yaml", yaml)]).unwrap_err();
    let fields: Vec<&str> = errors.iter().filter_map(ManifestError::field).collect();
    assert_eq!(
        fields,
        [
            "spec.loadBalancer.consistentHash.header",
            "spec.loadBalancer.zoneAware.preferLocal"
        ]
    );
}

/// Two routes to Service web, each with its own policy.
const TWO_ROUTES: &str = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: other }
spec:
  parentRefs: [{ name: gw }]
  hostnames: [other.example]
  rules:
  - backendRefs: [{ name: web, port: 80 }]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: older, creationTimestamp: "2024-01-01T00:00:00Z" }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: web }]
  loadBalancer: { type: LeastRequest }
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: newer, creationTimestamp: "2024-02-01T00:00:00Z" }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: other }]
"#;

#[test]
fn two_policies_that_disagree_on_a_service_the_older_wins() {
    let t = run(&format!(
        "{BASE}{TWO_ROUTES}  loadBalancer: {{ type: Random }}\n"
    ));
    let p = web_policy(&t).unwrap();
    assert_eq!(balancer(&p), (Some(Algorithm::LeastRequest), None));
    assert_eq!(
        accepted(&t, "older"),
        (true, "Accepted".into(), String::new())
    );
    let (ok, reason, message) = accepted(&t, "newer");
    assert!(!ok, "it has no effect anywhere: {message}");
    assert_eq!(reason, "Conflicted");
    let s = t
        .status("BackendTrafficPolicy", Some("default"), "newer")
        .unwrap();
    let at_service = s
        .ancestors()
        .iter()
        .find(|a| a.ancestor().kind == "Service" && a.ancestor().name == "web")
        .expect("a condition for the Service");
    let c = at_service.condition("Accepted").unwrap();
    assert!(!c.is_true());
    assert_eq!(c.reason(), "Conflicted");
    assert!(
        c.message().contains("Service default/web")
            && c.message().contains(
                "loadBalancer.type (set by the older BackendTrafficPolicy default/older)"
            ),
        "{}",
        c.message()
    );

    // The same value, or a field the older one leaves unset: no conflict, both apply.
    let t = run(&format!(
        "{BASE}{TWO_ROUTES}  loadBalancer: {{ type: LeastRequest, slowStart: {{ window: 10s }} }}\n  healthCheck: {{ passive: {{}} }}\n"
    ));
    assert_eq!(
        accepted(&t, "newer"),
        (true, "Accepted".into(), String::new())
    );
    let p = web_policy(&t).unwrap();
    assert_eq!(balancer(&p), (Some(Algorithm::LeastRequest), None));
    assert!(p.load_balancer.unwrap().slow_start.is_some());
    assert!(p.health_check.unwrap().passive.is_some());
}

#[test]
fn a_gatekit_backend_policy_on_the_service_wins_field_by_field() {
    let t = run(&with_upstream(
        r#"  loadBalancer: { type: RoundRobin, slowStart: { window: 20s } }
  healthCheck: { passive: { consecutive5XxErrors: 2 } }
---
apiVersion: gatekit.io/v1alpha1
kind: BackendPolicy
metadata: { name: gk }
spec:
  targetRefs: [{ kind: Service, name: web }]
  loadBalancer: { algorithm: peak-ewma }
  circuitBreaker: { maxConnections: 10 }
"#,
    ));
    let p = web_policy(&t).unwrap();
    let lb = p.load_balancer.as_ref().unwrap();
    assert_eq!(lb.algorithm, Some(Algorithm::PeakEwma), "gatekit's wins");
    assert!(
        lb.slow_start.is_some(),
        "the BTP's fills what gatekit's leaves"
    );
    assert_eq!(
        p.health_check.unwrap().passive.unwrap().consecutive_5xx,
        Some(2)
    );
    assert_eq!(p.circuit_breaker.unwrap().max_connections, Some(10));
    let (ok, _, message) = accepted(&t, "lb");
    assert!(ok);
    assert!(
        message.contains(
            "Service default/web: loadBalancer.type not applied, the BackendPolicy default/gk sets it"
        ),
        "{message}"
    );

    // Everything it sets is gatekit's: Conflicted at the Service and the route.
    let t = run(&with_upstream(
        r#"  loadBalancer: { type: Random }
---
apiVersion: gatekit.io/v1alpha1
kind: BackendPolicy
metadata: { name: gk }
spec:
  targetRefs: [{ kind: Service, name: web }]
  loadBalancer: { algorithm: least-request }
"#,
    ));
    let (ok, reason, message) = accepted(&t, "lb");
    assert!(!ok && reason == "Conflicted", "{message}");
    assert!(
        message.contains("the BackendPolicy default/gk sets it"),
        "{message}"
    );
    let p = web_policy(&t).unwrap();
    assert_eq!(balancer(&p), (Some(Algorithm::LeastRequest), None));
}

#[test]
fn a_gateway_policy_reaches_the_services_of_its_routes() {
    let t = run(&format!(
        r#"{BASE}---
apiVersion: v1
kind: Service
metadata: {{ name: api }}
spec: {{ ports: [{{ port: 8080 }}] }}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: api }}
spec:
  parentRefs: [{{ name: gw, sectionName: http }}]
  hostnames: [api.example]
  rules:
  - backendRefs: [{{ name: api, port: 8080 }}]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{ name: gw }}
spec:
  targetRef: {{ group: gateway.networking.k8s.io, kind: Gateway, name: gw }}
  healthCheck: {{ active: {{ type: TCP }} }}
"#
    ));
    assert_eq!(accepted(&t, "gw"), (true, "Accepted".into(), String::new()));
    for name in ["default/web:80", "default/api:8080"] {
        let hc = t.upstreams()[name].policy().unwrap().health_check.clone();
        assert_eq!(hc.unwrap().active.unwrap().type_, ProbeType::Tcp, "{name}");
    }
}

#[test]
fn circuit_breaker_thresholds_default_to_envoy_gateways_1024() {
    let t = run(&with_upstream("  circuitBreaker: { maxConnections: 8 }\n"));
    let mut expected = CircuitBreakerConfig::default();
    expected.max_connections = Some(8);
    expected.max_pending_requests = Some(1024);
    expected.max_parallel_requests = Some(1024);
    expected.max_parallel_retries = Some(1024);
    assert_eq!(
        rule(&t, "web").backends[0].breaker.as_deref(),
        Some(&expected)
    );
}

#[test]
fn a_service_in_another_namespace_is_left_alone() {
    let t = run(&format!(
        r#"{BASE}---
apiVersion: v1
kind: Service
metadata: {{ name: shared, namespace: platform }}
spec: {{ ports: [{{ port: 80 }}] }}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{ name: routes, namespace: platform }}
spec:
  from: [{{ group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default }}]
  to: [{{ group: "", kind: Service }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: mixed }}
spec:
  parentRefs: [{{ name: gw }}]
  hostnames: [mixed.example]
  rules:
  - backendRefs: [{{ name: web, port: 80 }}, {{ name: shared, namespace: platform, port: 80 }}]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{ name: lb }}
spec:
  targetRefs: [{{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: mixed }}]
  loadBalancer: {{ type: Random }}
"#
    ));
    let (ok, _, message) = accepted(&t, "lb");
    assert!(ok, "{message}");
    assert!(
        message.contains("Service platform/shared: loadBalancer.type not applied, the Service is in another namespace"),
        "{message}"
    );
    assert!(t.upstreams()["platform/shared:80"].policy().is_none());
    assert_eq!(
        balancer(&web_policy(&t).unwrap()),
        (Some(Algorithm::Random), None)
    );
}

// === targets: targetSelectors, status ancestors, unserved kinds ===

/// A Gateway, Service web and three HTTPRoutes with labels: `a` (`tier: free, team:
/// x`), `b` (`tier: paid`), `c` (no labels), each on its own path; then `extra`.
fn labelled(extra: &str) -> String {
    let mut yaml = String::from(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, labels: { tier: free } }
spec:
  gatewayClassName: gatekit
  listeners: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec: { ports: [{ port: 80 }] }
"#,
    );
    for (name, labels) in [
        ("a", "{ tier: free, team: x }"),
        ("b", "{ tier: paid }"),
        ("c", "{}"),
    ] {
        yaml.push_str(&format!(
            r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: {name}, labels: {labels} }}
spec:
  parentRefs: [{{ name: gw }}]
  rules:
  - matches: [{{ path: {{ type: PathPrefix, value: /{name} }} }}]
    backendRefs: [{{ name: web, port: 80 }}]
"#
        ));
    }
    yaml.push_str("---\n");
    yaml.push_str(extra);
    yaml
}

/// A policy `sel` setting `numRetries: 4` with the given targeting lines.
fn selecting(targets: &str) -> String {
    format!(
        r#"apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{ name: sel }}
spec:
{targets}
  retry: {{ numRetries: 4 }}
"#
    )
}

/// The routes among a, b, c whose rule got the policy's retry.
fn retried(t: &Translation) -> Vec<&'static str> {
    ["a", "b", "c"]
        .into_iter()
        .filter(|r| {
            rule(t, r)
                .policy
                .retry
                .as_ref()
                .is_some_and(|p| p.attempts == 4)
        })
        .collect()
}

/// (kind, name, section) of each ancestor of a policy's status.
fn ancestors(t: &Translation, name: &str) -> Vec<(String, String, Option<String>)> {
    t.status("BackendTrafficPolicy", Some("default"), name)
        .unwrap()
        .ancestors()
        .iter()
        .map(|a| {
            let r = a.ancestor();
            (r.kind.clone(), r.name.clone(), r.section_name.clone())
        })
        .collect()
}

#[test]
fn target_selectors_select_by_labels_and_expressions() {
    let cases = [
        (
            "  targetSelectors: [{ kind: HTTPRoute, matchLabels: { tier: free } }]",
            vec!["a"],
        ),
        (
            "  targetSelectors:\n  - kind: HTTPRoute\n    matchExpressions: [{ key: tier, operator: In, values: [free, paid] }]",
            vec!["a", "b"],
        ),
        (
            "  targetSelectors:\n  - kind: HTTPRoute\n    matchExpressions: [{ key: tier, operator: NotIn, values: [free] }]",
            vec!["b", "c"],
        ),
        (
            "  targetSelectors:\n  - kind: HTTPRoute\n    matchExpressions: [{ key: tier, operator: Exists }]",
            vec!["a", "b"],
        ),
        (
            "  targetSelectors:\n  - kind: HTTPRoute\n    matchExpressions: [{ key: tier, operator: DoesNotExist }]",
            vec!["c"],
        ),
        (
            // matchLabels and matchExpressions together: both must hold.
            "  targetSelectors:\n  - group: gateway.networking.k8s.io\n    kind: HTTPRoute\n    matchLabels: { tier: free }\n    matchExpressions: [{ key: team, operator: NotIn, values: [x] }]",
            vec![],
        ),
        (
            // The kind is part of the selector: the Gateway's labels select the
            // Gateway (so every route under it), not routes.
            "  targetSelectors: [{ kind: Gateway, matchLabels: { tier: free } }]",
            vec!["a", "b", "c"],
        ),
    ];
    for (targets, want) in cases {
        let (set, warnings) = load(&labelled(&selecting(targets)));
        assert!(warnings.is_empty(), "{targets}: {warnings:?}");
        let t = translate(&set, &TranslateOptions::default());
        assert_eq!(retried(&t), want, "{targets}");
        if !want.is_empty() {
            assert_eq!(
                accepted(&t, "sel"),
                (true, "Accepted".into(), String::new()),
                "{targets}"
            );
        }
    }
}

#[test]
fn a_selector_matching_nothing_is_no_target_and_refs_and_selectors_unite() {
    // Nothing selected: no target, no TargetNotFound ancestor (Envoy Gateway reports
    // none for a selector).
    let t = run(&labelled(&selecting(
        "  targetSelectors: [{ kind: HTTPRoute, matchLabels: { tier: gold } }]",
    )));
    assert!(retried(&t).is_empty());
    let (ok, _, message) = accepted(&t, "sel");
    assert!(!ok);
    assert!(message.contains("no target"), "{message}");
    assert!(ancestors(&t, "sel").is_empty());

    // Selected a, listed a and b: both, a once (no conflict with itself), reported
    // once at their common Gateway.
    let t = run(&labelled(&selecting(
        "  targetSelectors: [{ kind: HTTPRoute, matchLabels: { team: x } }]
  targetRefs:
  - { group: gateway.networking.k8s.io, kind: HTTPRoute, name: a }
  - { group: gateway.networking.k8s.io, kind: HTTPRoute, name: b }",
    )));
    assert_eq!(retried(&t), ["a", "b"]);
    assert_eq!(
        accepted(&t, "sel"),
        (true, "Accepted".into(), String::new())
    );
    assert_eq!(
        ancestors(&t, "sel"),
        [("Gateway".into(), "gw".into(), None)]
    );
}

#[test]
fn selected_targets_meet_older_policies_like_target_refs() {
    // Same age: "older" wins on its name.
    let older = r#"apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: older }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: a }]
  retry: { numRetries: 1 }
---
"#;
    let yaml = labelled(&format!(
        "{older}{}",
        selecting("  targetSelectors: [{ kind: HTTPRoute, matchLabels: { tier: free } }]")
    ));
    let t = run(&yaml);
    assert_eq!(rule(&t, "a").policy.retry.as_ref().unwrap().attempts, 1);
    let (ok, reason, message) = accepted(&t, "sel");
    assert!(!ok);
    assert_eq!(reason, "Conflicted");
    assert!(
        message.contains("HTTPRoute default/a: not applied, the older BackendTrafficPolicy default/older targets it"),
        "{message}"
    );
}

#[test]
fn route_targets_are_reported_at_their_parent_gateways() {
    let yaml = format!(
        r#"{BASE}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: two }}
spec:
  parentRefs:
  - {{ name: gw, sectionName: http }}
  - {{ name: elsewhere, namespace: infra }}
  - {{ kind: Service, group: "", name: web }}
  rules:
  - matches: [{{ path: {{ type: PathPrefix, value: /two }} }}]
    backendRefs: [{{ name: web, port: 80 }}]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{ name: routes }}
spec:
  targetRefs:
  - {{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: web }}
  - {{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: two }}
  retry: {{ numRetries: 4 }}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{ name: gateway }}
spec:
  targetRefs: [{{ group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: http }}]
  retry: {{ numRetries: 1 }}
"#
    );
    let t = run(&yaml);
    let gw = |section: Option<&str>| {
        (
            "Gateway".to_owned(),
            "gw".to_owned(),
            section.map(str::to_owned),
        )
    };
    // Route web names gw; route two names gw's listener http and infra/elsewhere (a
    // Gateway gatekit does not have: Envoy Gateway lists every Gateway parentRef),
    // never the route itself nor a non-Gateway parent.
    assert_eq!(
        ancestors(&t, "routes"),
        [
            gw(None),
            gw(Some("http")),
            ("Gateway".into(), "elsewhere".into(), None),
        ]
    );
    let s = t
        .status("BackendTrafficPolicy", Some("default"), "routes")
        .unwrap();
    let elsewhere = s
        .ancestors()
        .iter()
        .find(|a| a.ancestor().name == "elsewhere")
        .unwrap();
    assert_eq!(elsewhere.ancestor().namespace, "infra");
    assert_eq!(elsewhere.ancestor().group, "gateway.networking.k8s.io");
    // A Gateway (listener) target is reported at itself.
    assert_eq!(ancestors(&t, "gateway"), [gw(Some("http"))]);

    // A newer policy on the same route is Conflicted at the route's Gateway.
    let newer = format!(
        r#"{yaml}---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{ name: newer, creationTimestamp: "2999-01-01T00:00:00Z" }}
spec:
  targetRefs: [{{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: web }}]
  retry: {{ numRetries: 2 }}
"#
    );
    let t = run(&newer);
    let s = t
        .status("BackendTrafficPolicy", Some("default"), "newer")
        .unwrap();
    assert_eq!(s.ancestors().len(), 1);
    assert_eq!(s.ancestors()[0].ancestor().kind, "Gateway");
    let c = s.ancestors()[0].condition("Accepted").unwrap();
    assert_eq!(c.reason(), "Conflicted");
}

#[test]
fn week_month_and_year_units_have_envoy_ratelimits_lengths() {
    const DAY: u64 = 86_400;
    for (unit, days) in [("Day", 1), ("Week", 7), ("Month", 30), ("Year", 365)] {
        let t = run(&format!(
            r#"{BASE}---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{ name: long }}
spec:
  targetRefs: [{{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: web }}]
  rateLimit:
    type: Local
    local: {{ rules: [{{ limit: {{ requests: 5, unit: {unit} }} }}] }}
"#
        ));
        assert_eq!(
            rule(&t, "web").policy.rate_limits[0].quota,
            Quota::new(5, Duration::from_secs(days * DAY)),
            "{unit}"
        );
    }
}

#[test]
fn an_unknown_limit_field_refuses_the_policy_naming_it() {
    let t = run(&format!(
        r#"{BASE}---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{ name: meta }}
spec:
  targetRefs: [{{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: web }}]
  rateLimit:
    type: Local
    local:
      rules:
      - limit:
          requests: 5
          unit: Second
          fromMetadata: {{ namespace: io.example, key: budget }}
"#
    ));
    let (ok, reason, message) = accepted(&t, "meta");
    assert!(!ok);
    assert_eq!(reason, "Unsupported");
    assert!(
        message.contains("spec.rateLimit.local.rules[0].limit.fromMetadata"),
        "{message}"
    );
    assert!(rule(&t, "web").policy.rate_limits.is_empty(), "not applied");
}

#[test]
fn target_kinds_gatekit_does_not_serve_load_and_refuse_the_policy() {
    let yaml = format!(
        r#"{BASE}---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{ name: tcp }}
spec:
  targetRefs:
  - {{ group: gateway.networking.k8s.io, kind: ServiceImport, name: db }}
  - {{ group: gateway.networking.k8s.io, kind: ListenerSet, name: extra }}
  - {{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: web }}
  retry: {{ numRetries: 4 }}
"#
    );
    let (set, warnings) = load(&yaml);
    assert!(warnings.is_empty(), "{warnings:?}");
    let t = translate(&set, &TranslateOptions::default());
    let (ok, reason, message) = accepted(&t, "tcp");
    assert!(!ok);
    assert_eq!(reason, "Unsupported");
    for named in [
        "spec.targetRefs[0]",
        "ServiceImport",
        "spec.targetRefs[1]",
        "ListenerSet",
    ] {
        assert!(message.contains(named), "{named} not in {message}");
    }
    assert!(!message.contains("spec.targetRefs[2]"), "{message}");
    assert!(rule(&t, "web").policy.retry.is_none(), "not half applied");
    let kinds: Vec<String> = ancestors(&t, "tcp").into_iter().map(|a| a.0).collect();
    assert_eq!(kinds, ["ServiceImport", "ListenerSet", "Gateway"]);
}

#[test]
fn a_missing_target_group_is_read_with_a_warning() {
    let yaml = format!(
        r#"{BASE}---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{ name: nogroup }}
spec:
  targetRefs: [{{ kind: HTTPRoute, name: web }}]
  retry: {{ numRetries: 4 }}
"#
    );
    let (set, warnings) = load(&yaml);
    let messages: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].contains("spec.targetRefs[0].group") && messages[0].contains("requires"),
        "{messages:?}"
    );
    let t = translate(&set, &TranslateOptions::default());
    assert_eq!(rule(&t, "web").policy.retry.as_ref().unwrap().attempts, 4);
}

#[test]
fn invalid_target_selectors_are_load_errors_and_unknown_fields_refuse() {
    let yaml = r#"apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: bad }
spec:
  targetSelectors:
  - group: example.com
    kind: HTTPRoute
    matchExpressions:
    - { key: tier, operator: Matches, values: [x] }
    - { key: tier, operator: In }
    - { key: tier, operator: Exists, values: [x] }
"#;
    let errors: Vec<ManifestError> = match ResourceSet::from_documents([("p.yaml", yaml)]) {
        Ok(_) => panic!("loaded"),
        Err(e) => e,
    };
    let fields: Vec<&str> = errors.iter().filter_map(ManifestError::field).collect();
    assert_eq!(
        fields,
        [
            "spec.targetSelectors[0].group",
            "spec.targetSelectors[0].matchExpressions[0].operator",
            "spec.targetSelectors[0].matchExpressions[1].values",
            "spec.targetSelectors[0].matchExpressions[2].values",
        ]
    );

    // Newer Envoy Gateway's cross-namespace `namespaces`, and a kind gatekit does
    // not serve: unimplemented.
    let t = run(&labelled(&selecting(
        "  targetSelectors:
  - { kind: HTTPRoute, matchLabels: { tier: free }, namespaces: { from: All } }
  - { kind: ListenerSet, matchLabels: { tier: free } }",
    )));
    let (ok, reason, message) = accepted(&t, "sel");
    assert!(!ok);
    assert_eq!(reason, "Unsupported");
    assert!(
        message.contains("spec.targetSelectors[0].namespaces")
            && message.contains("spec.targetSelectors[1].kind"),
        "{message}"
    );
    assert!(retried(&t).is_empty());
}

// === timeout.tcp.connectTimeout, timeout.http.connectionIdleTimeout: per Service ===

/// The Service web's connection timeouts, as (connectTimeout, idleTimeout).
fn connection_of(p: &BackendPolicySpec) -> (Option<Duration>, Option<Duration>) {
    let c = p.connection.as_ref().expect("a connection section");
    (c.connect_timeout().unwrap(), c.idle_timeout().unwrap())
}

#[test]
fn connection_timeouts_become_the_services_connection_settings() {
    let p = upstream_of(
        "  timeout:\n    tcp: { connectTimeout: 200ms }\n    http: { connectionIdleTimeout: 300ms, requestTimeout: 5s }\n",
    );
    assert_eq!(
        connection_of(&p),
        (
            Some(Duration::from_millis(200)),
            Some(Duration::from_millis(300))
        )
    );
    assert!(p.load_balancer.is_none() && p.health_check.is_none());
    // Each alone.
    let p = upstream_of("  timeout: { tcp: { connectTimeout: 2s } }\n");
    assert_eq!(connection_of(&p), (Some(Duration::from_secs(2)), None));
    let p = upstream_of("  timeout: { http: { connectionIdleTimeout: 90000ms } }\n");
    assert_eq!(connection_of(&p), (None, Some(Duration::from_secs(90))));
    let c = p.connection.unwrap();
    assert_eq!(c.idle_timeout.as_deref(), Some("1m30s"), "canonical");
    let p = upstream_of("  timeout: { tcp: { connectTimeout: 1h2m3s4ms } }\n");
    assert_eq!(
        connection_of(&p),
        (Some(Duration::from_millis(3_723_004)), None)
    );
    // A request timeout alone is a route setting: the Service's policy is untouched.
    let t = run(&with_upstream(
        "  timeout: { http: { requestTimeout: 5s } }\n",
    ));
    assert!(web_policy(&t).is_none_or(|p| p.connection.is_none()));
}

#[test]
fn two_policies_that_disagree_on_connection_timeouts_the_older_wins() {
    let older =
        "  timeout:\n    tcp: { connectTimeout: 1s }\n    http: { connectionIdleTimeout: 10s }\n";
    let two = TWO_ROUTES.replace("  loadBalancer: { type: LeastRequest }\n", older);
    let t = run(&format!(
        "{BASE}{two}  timeout: {{ tcp: {{ connectTimeout: 3s }}, http: {{ connectionIdleTimeout: 10s }} }}\n"
    ));
    assert_eq!(
        connection_of(&web_policy(&t).unwrap()),
        (Some(Duration::from_secs(1)), Some(Duration::from_secs(10)))
    );
    assert_eq!(
        accepted(&t, "older"),
        (true, "Accepted".into(), String::new())
    );
    let (ok, reason, message) = accepted(&t, "newer");
    assert!(!ok && reason == "Conflicted", "{message}");
    let s = t
        .status("BackendTrafficPolicy", Some("default"), "newer")
        .unwrap();
    let c = s
        .ancestors()
        .iter()
        .find(|a| a.ancestor().kind == "Service" && a.ancestor().name == "web")
        .expect("a condition for the Service")
        .condition("Accepted")
        .unwrap();
    assert!(!c.is_true() && c.reason() == "Conflicted");
    assert!(
        c.message().contains(
            "timeout.tcp.connectTimeout (set by the older BackendTrafficPolicy default/older)"
        ),
        "{}",
        c.message()
    );
    assert!(
        !c.message().contains("connectionIdleTimeout"),
        "the same value is no conflict: {}",
        c.message()
    );

    // The same durations written differently are the same value: no conflict.
    let t = run(&format!(
        "{BASE}{two}  timeout: {{ tcp: {{ connectTimeout: 1000ms }}, http: {{ connectionIdleTimeout: 10000ms }} }}\n"
    ));
    assert_eq!(
        accepted(&t, "newer"),
        (true, "Accepted".into(), String::new())
    );

    // A gatekit BackendPolicy on the Service wins field by field.
    let t = run(&with_upstream(
        r#"  timeout: { tcp: { connectTimeout: 1s }, http: { connectionIdleTimeout: 10s } }
---
apiVersion: gatekit.io/v1alpha1
kind: BackendPolicy
metadata: { name: gk }
spec:
  targetRefs: [{ kind: Service, name: web }]
  connection: { idleTimeout: 45s }
"#,
    ));
    assert_eq!(
        connection_of(&web_policy(&t).unwrap()),
        (Some(Duration::from_secs(1)), Some(Duration::from_secs(45)))
    );
    let (ok, _, message) = accepted(&t, "lb");
    assert!(ok);
    assert!(
        message.contains(
            "timeout.http.connectionIdleTimeout not applied, the BackendPolicy default/gk sets it"
        ),
        "{message}"
    );
}

#[test]
fn invalid_connection_timeouts_are_load_errors_naming_the_field() {
    let yaml = r#"apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: bad }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: web }]
  timeout:
    tcp: { connectTimeout: soon }
    http: { connectionIdleTimeout: 0s }
"#;
    let errors = ResourceSet::from_documents([("p.yaml", yaml)]).unwrap_err();
    let fields: Vec<&str> = errors.iter().filter_map(ManifestError::field).collect();
    assert_eq!(
        fields,
        [
            "spec.timeout.tcp.connectTimeout",
            "spec.timeout.http.connectionIdleTimeout"
        ],
        "{errors:#?}"
    );
    let text = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("must be longer than 0s"), "{text}");
}

// === proxyProtocol: written to TCPRoute/TLSRoute backends, refused for HTTP ones ===

#[test]
fn proxy_protocol_on_an_http_route_is_refused_saying_http_backends_get_none() {
    let t = run(&with_upstream("  proxyProtocol: { version: V2 }\n"));
    let (ok, reason, message) = accepted(&t, "lb");
    assert!(!ok, "{message}");
    assert_eq!(reason, "Unsupported");
    assert!(message.contains("spec.proxyProtocol"), "{message}");
    assert!(message.contains("HTTP backends get none"), "{message}");
    assert_eq!(t.upstreams()["default/web:80"].proxy_protocol(), None);
}

#[test]
fn proxy_protocol_on_a_gateway_reaches_tcp_route_backends_and_says_http_ones_get_none() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw }
spec:
  gatewayClassName: gatekit
  listeners:
  - { name: http, port: 80, protocol: HTTP }
  - { name: db, port: 5432, protocol: TCP }
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec: { ports: [{ port: 80 }] }
---
apiVersion: v1
kind: Service
metadata: { name: db }
spec: { ports: [{ port: 5432 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web }
spec:
  parentRefs: [{ name: gw, sectionName: http }]
  rules:
  - backendRefs: [{ name: web, port: 80 }]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: { name: db }
spec:
  parentRefs: [{ name: gw, sectionName: db }]
  rules:
  - backendRefs: [{ name: db, port: 5432 }]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: pp }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: gw }]
  proxyProtocol: { version: V1 }
"#;
    let t = run(yaml);
    let (ok, _, message) = accepted(&t, "pp");
    assert!(ok, "{message}");
    assert_eq!(
        t.upstreams()["default/db:5432"].proxy_protocol(),
        Some(gatekit_core::server::ProxyVersion::V1)
    );
    assert!(
        message.contains("Service default/web: proxyProtocol not applied"),
        "{message}"
    );
    // Not a BackendPolicy field: the Services' policies stay empty.
    assert!(t.upstreams()["default/db:5432"].policy().is_none());
}
