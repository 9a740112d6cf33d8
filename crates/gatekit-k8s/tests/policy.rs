//! Traffic policy: HTTPRoute `retry`, TrafficPolicy attachment and merging,
//! BackendPolicy circuit breakers and retry budgets, and invalid policies refused by the
//! loaders.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gatekit_core::retry::RetryPolicy;
use gatekit_core::route::{Route, Rule};
use gatekit_k8s::status::ResourceStatus;
use gatekit_k8s::{ManifestError, ResourceSet, TranslateOptions, Translation, translate};
use http::StatusCode;

fn load(yaml: &str) -> Result<ResourceSet, Vec<ManifestError>> {
    ResourceSet::from_documents([("fixture.yaml", yaml)]).map(|(set, _)| set)
}

fn run(yaml: &str) -> Translation {
    let set = load(yaml).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    translate(&set, &TranslateOptions::default())
}

/// The one route named `name` on port 80.
fn route<'a>(t: &'a Translation, name: &str) -> &'a Route {
    let found: Vec<&Route> = t
        .routes_for_port(80)
        .iter()
        .filter(|r| r.id.name() == name)
        .map(|r| &**r)
        .collect();
    assert_eq!(found.len(), 1, "routes named {name}: {found:#?}");
    found[0]
}

fn rule<'a>(t: &'a Translation, route_name: &str, rule_name: &str) -> &'a Rule {
    route(t, route_name)
        .rules
        .iter()
        .find(|r| r.name.as_deref() == Some(rule_name))
        .unwrap_or_else(|| panic!("no rule {rule_name} in {route_name}"))
}

fn retry(rule: &Rule) -> &RetryPolicy {
    rule.policy
        .retry
        .as_ref()
        .unwrap_or_else(|| panic!("no retry on {rule:#?}"))
}

/// (Accepted status, reason, message) of a policy.
fn accepted(t: &Translation, kind: &str, name: &str) -> (bool, String, String) {
    let s: &ResourceStatus = t
        .status(kind, Some("default"), name)
        .unwrap_or_else(|| panic!("no status for {kind} {name}: {:#?}", t.statuses()));
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
apiVersion: v1
kind: Service
metadata: { name: api }
spec: { ports: [{ port: 80 }] }
"#;

// === HTTPRoute retry ===

/// The HTTPRoute `retry` example of GEP-1731 (and the v1.7 reference), a route with an
/// empty `retry`, and one that disables retries.
#[test]
fn the_specs_retry_example_parses_and_translates() {
    let yaml = format!(
        r#"{BASE}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: retry-example
spec:
  parentRefs:
  - name: gw
  rules:
  - name: spec
    backendRefs:
    - name: web
      port: 80
    retry:
      codes:
      - 500
      - 502
      - 503
      - 504
      attempts: 2
      backoff: 100ms
  - name: defaults
    matches: [{{ path: {{ value: /defaults }} }}]
    backendRefs: [{{ name: web, port: 80 }}]
    retry: {{}}
  - name: off
    matches: [{{ path: {{ value: /off }} }}]
    backendRefs: [{{ name: web, port: 80 }}]
    retry: {{ attempts: 0, codes: [] }}
"#
    );
    let t = run(&yaml);
    assert!(t.errors().is_empty(), "{:?}", t.errors());
    let r = retry(rule(&t, "retry-example", "spec"));
    assert_eq!(r.attempts, 2);
    assert_eq!(
        r.on.statuses,
        [500, 502, 503, 504].map(|c| StatusCode::from_u16(c).unwrap())
    );
    assert!(!r.on.gateway_error && !r.on.server_error);
    assert!(r.on.unsent && r.on.connect_failure && r.on.reset && r.on.timeout);
    assert_eq!(r.backoff.base, Duration::from_millis(100));

    let d = retry(rule(&t, "retry-example", "defaults"));
    assert_eq!(d.attempts, 2, "Envoy Gateway's default");
    assert!(
        d.on.gateway_error && d.on.statuses.is_empty(),
        "502/503/504"
    );
    assert_eq!(d.backoff.base, Duration::from_millis(25));

    let off = retry(rule(&t, "retry-example", "off"));
    assert_eq!(off.attempts, 0);
    assert!(!off.on.gateway_error && off.on.statuses.is_empty());
}

#[test]
fn invalid_retry_values_drop_the_rule_with_field_paths() {
    let yaml = format!(
        r#"{BASE}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: r }}
spec:
  parentRefs: [{{ name: gw }}]
  rules:
  - backendRefs: [{{ name: web, port: 80 }}]
    retry: {{ attempts: -1, codes: [503, 200], backoff: "1 s" }}
  - matches: [{{ path: {{ value: /ok }} }}]
    backendRefs: [{{ name: web, port: 80 }}]
"#
    );
    let t = run(&yaml);
    let fields: Vec<&str> = t.errors().iter().map(|e| e.field()).collect();
    assert_eq!(
        fields,
        [
            "spec.rules[0].retry.attempts",
            "spec.rules[0].retry.codes[1]",
            "spec.rules[0].retry.backoff",
        ]
    );
    let dropped = &route(&t, "r").rules[0];
    assert!(dropped.backends.is_empty() && dropped.policy.retry.is_none());
    let p = &t
        .status("HTTPRoute", Some("default"), "r")
        .unwrap()
        .parents()[0];
    assert!(p.condition("PartiallyInvalid").unwrap().is_true());
}

#[test]
fn an_external_auth_filter_with_an_unresolved_backend_guards_its_rule_and_says_why() {
    let yaml = format!(
        r#"{BASE}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: r }}
spec:
  parentRefs: [{{ name: gw }}]
  rules:
  - backendRefs: [{{ name: web, port: 80 }}]
    filters:
    - type: ExternalAuth
      externalAuth:
        protocol: HTTP
        backendRef: {{ name: no-such-authz, port: 80 }}
"#
    );
    let t = run(&yaml);
    // GEP-1494: the filter is the rule's access policy; its backendRef to a missing
    // Service leaves it without a spec, so the rule refuses (500), never unguarded.
    let name = "HTTPRoute/default/r/rules[0]/externalAuth";
    let route = &t.routes_for_port(80)[0];
    assert_eq!(route.rules[0].policy.access, [name]);
    let entry = &t.access_policies()[name];
    assert!(entry.spec().is_none());
    assert!(
        entry.problem().unwrap().contains("no-such-authz"),
        "{entry:?}"
    );
    let e = t
        .errors()
        .iter()
        .find(|e| e.field() == "spec.rules[0].filters[0].externalAuth.backendRef")
        .unwrap();
    assert!(e.reason().contains("no-such-authz"), "{}", e.reason());
    let p = &t
        .status("HTTPRoute", Some("default"), "r")
        .unwrap()
        .parents()[0];
    assert!(p.condition("Accepted").unwrap().is_true());
    assert!(!p.condition("ResolvedRefs").unwrap().is_true());
}

// === TrafficPolicy ===

const TWO_ROUTES: &str = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r }
spec:
  parentRefs: [{ name: gw }]
  hostnames: [r.example]
  rules:
  - name: a
    matches: [{ path: { value: /a } }]
    backendRefs: [{ name: web, port: 80 }]
  - name: b
    matches: [{ path: { value: /b } }]
    backendRefs: [{ name: web, port: 80 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: other }
spec:
  parentRefs: [{ name: gw }]
  hostnames: [other.example]
  rules:
  - name: only
    backendRefs: [{ name: api, port: 80 }]
"#;

#[test]
fn traffic_policies_merge_field_by_field_from_gateway_to_rule() {
    let yaml = format!(
        r#"{BASE}{TWO_ROUTES}
---
apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: {{ name: gateway-wide, creationTimestamp: "2024-01-01T00:00:00Z" }}
spec:
  targetRefs: [{{ group: gateway.networking.k8s.io, kind: Gateway, name: gw }}]
  retry: {{ attempts: 5 }}
  rateLimit:
    rules: [{{ limit: {{ requests: 100, unit: Second }} }}]
  limits: {{ maxConcurrentRequests: 10, maxRequestBodyBytes: 1Mi }}
---
apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: {{ name: listener, creationTimestamp: "2024-01-02T00:00:00Z" }}
spec:
  targetRefs: [{{ kind: Gateway, name: gw, sectionName: http }}]
  limits: {{ maxConcurrentRequests: 20 }}
---
apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: {{ name: route-limits, creationTimestamp: "2024-01-03T00:00:00Z" }}
spec:
  targetRefs: [{{ kind: HTTPRoute, name: r }}]
  rateLimit:
    rules:
    - name: per-ip
      clientSelectors: {{ clientIP: true }}
      limit: {{ requests: 10, unit: Minute }}
      burst: 3
---
apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: {{ name: rule-a, creationTimestamp: "2024-01-04T00:00:00Z" }}
spec:
  targetRefs: [{{ kind: HTTPRoute, name: r, sectionName: a }}]
  retry: {{ attempts: 1, retryOn: [5xx], grpcStatusCodes: [unavailable] }}
  limits: {{ maxRequestBodyBytes: 1024 }}
"#
    );
    let t = run(&yaml);
    assert!(t.errors().is_empty(), "{:?}", t.errors());
    for p in ["gateway-wide", "listener", "route-limits", "rule-a"] {
        assert_eq!(
            accepted(&t, "TrafficPolicy", p),
            (true, "Accepted".into(), String::new())
        );
    }

    // Rule a: retry and body size from its own policy, the rate limit from the route's,
    // the concurrency from the listener's.
    let a = rule(&t, "r", "a");
    assert_eq!(retry(a).attempts, 1);
    assert!(retry(a).on.server_error && retry(a).on.unsent);
    assert_eq!(retry(a).on.grpc, [14]);
    assert_eq!(a.policy.rate_limits.len(), 1);
    let per_ip = &a.policy.rate_limits[0];
    assert_eq!(per_ip.name, "default/route-limits/per-ip");
    assert_eq!(per_ip.quota.requests, 10);
    assert_eq!(per_ip.quota.interval, Duration::from_secs(60));
    assert_eq!(per_ip.quota.burst, 3);
    assert_eq!(a.policy.limits.max_concurrent_requests, Some(20));
    assert_eq!(a.policy.limits.max_request_body, Some(1024));

    // Rule b: the route's rate limit, everything else from the Gateway and listener.
    let b = rule(&t, "r", "b");
    assert_eq!(retry(b).attempts, 5);
    assert_eq!(b.policy.rate_limits, a.policy.rate_limits);
    assert_eq!(b.policy.limits.max_concurrent_requests, Some(20));
    assert_eq!(b.policy.limits.max_request_body, Some(1 << 20));

    // Another route on the Gateway: the Gateway's rate limit (its own copy per rule).
    let only = rule(&t, "other", "only");
    assert_eq!(only.policy.rate_limits.len(), 1);
    assert_eq!(only.policy.rate_limits[0].name, "default/gateway-wide/0");
    assert!(only.policy.rate_limits[0].key.is_empty(), "one bucket");
    assert_eq!(only.policy.limits.max_concurrent_requests, Some(20));
}

#[test]
fn an_http_route_retry_beats_every_policy_retry() {
    let yaml = format!(
        r#"{BASE}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: r }}
spec:
  parentRefs: [{{ name: gw }}]
  rules:
  - name: own
    backendRefs: [{{ name: web, port: 80 }}]
    retry: {{ attempts: 3 }}
  - name: inherited
    matches: [{{ path: {{ value: /x }} }}]
    backendRefs: [{{ name: web, port: 80 }}]
---
apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: {{ name: rule-policy }}
spec:
  targetRefs:
  - {{ kind: HTTPRoute, name: r, sectionName: own }}
  - {{ kind: HTTPRoute, name: r, sectionName: inherited }}
  retry: {{ attempts: 1 }}
  limits: {{ maxConcurrentRequests: 7 }}
"#
    );
    let t = run(&yaml);
    let own = rule(&t, "r", "own");
    assert_eq!(retry(own).attempts, 3, "the route's own retry");
    assert_eq!(
        own.policy.limits.max_concurrent_requests,
        Some(7),
        "other fields still come from the policy"
    );
    assert_eq!(retry(rule(&t, "r", "inherited")).attempts, 1);
}

#[test]
fn same_target_same_field_conflicts_and_different_fields_both_apply() {
    let yaml = format!(
        r#"{BASE}{TWO_ROUTES}
---
apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: {{ name: older, creationTimestamp: "2024-01-01T00:00:00Z" }}
spec:
  targetRefs: [{{ kind: HTTPRoute, name: r }}]
  retry: {{ attempts: 4 }}
---
apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: {{ name: newer, creationTimestamp: "2024-02-01T00:00:00Z" }}
spec:
  targetRefs: [{{ kind: HTTPRoute, name: r }}]
  retry: {{ attempts: 9 }}
  limits: {{ maxRequestBodyBytes: 10 }}
---
apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: {{ name: limits-only, creationTimestamp: "2024-03-01T00:00:00Z" }}
spec:
  targetRefs: [{{ kind: HTTPRoute, name: r }}]
  limits: {{ maxConcurrentRequests: 2 }}
"#
    );
    let t = run(&yaml);
    assert!(accepted(&t, "TrafficPolicy", "older").0);
    let (ok, reason, message) = accepted(&t, "TrafficPolicy", "newer");
    assert!(!ok);
    assert_eq!(reason, "Conflicted");
    assert!(message.contains("default/older"), "{message}");
    assert!(message.contains("retry"), "{message}");
    assert!(accepted(&t, "TrafficPolicy", "limits-only").0);

    let a = rule(&t, "r", "a");
    assert_eq!(retry(a).attempts, 4, "the older policy wins");
    assert_eq!(
        a.policy.limits.max_request_body, None,
        "a conflicted policy is not applied to that target at all"
    );
    assert_eq!(
        a.policy.limits.max_concurrent_requests,
        Some(2),
        "another field"
    );
}

#[test]
fn missing_targets_are_target_not_found() {
    let yaml = format!(
        r#"{BASE}{TWO_ROUTES}
---
apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: {{ name: nothing }}
spec:
  targetRefs:
  - {{ kind: HTTPRoute, name: nosuch }}
  - {{ kind: Gateway, name: gw, sectionName: nosuch }}
  - {{ kind: HTTPRoute, name: r, sectionName: nosuch }}
  - {{ kind: GRPCRoute, name: r }}
  limits: {{ maxConcurrentRequests: 1 }}
---
apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: {{ name: partly }}
spec:
  targetRefs:
  - {{ kind: HTTPRoute, name: other }}
  - {{ kind: HTTPRoute, name: gone }}
  limits: {{ maxConcurrentRequests: 1 }}
"#
    );
    let t = run(&yaml);
    let (ok, reason, message) = accepted(&t, "TrafficPolicy", "nothing");
    assert!(!ok);
    assert_eq!(reason, "TargetNotFound");
    assert!(
        message.contains("HTTPRoute default/nosuch not found")
            && message.contains("Gateway default/gw section nosuch not found")
            && message.contains("GRPCRoute default/r not found"),
        "{message}"
    );
    assert_eq!(
        rule(&t, "r", "a").policy.limits.max_concurrent_requests,
        None
    );
    let (ok, _, message) = accepted(&t, "TrafficPolicy", "partly");
    assert!(ok, "applies to the target that exists");
    assert!(
        message.contains("HTTPRoute default/gone not found"),
        "{message}"
    );
    // Per target (the policy status's `ancestors`): each its own verdict.
    let s = t
        .status("TrafficPolicy", Some("default"), "partly")
        .unwrap();
    let per_target: Vec<(&str, &str, bool, &str)> = s
        .ancestors()
        .iter()
        .map(|a| {
            let c = a.condition("Accepted").unwrap();
            (
                a.ancestor().kind.as_str(),
                a.ancestor().name.as_str(),
                c.is_true(),
                c.reason(),
            )
        })
        .collect();
    assert_eq!(
        per_target,
        [
            ("HTTPRoute", "other", true, "Accepted"),
            ("HTTPRoute", "gone", false, "TargetNotFound"),
        ]
    );
    assert_eq!(
        rule(&t, "other", "only")
            .policy
            .limits
            .max_concurrent_requests,
        Some(1)
    );
}

#[test]
fn listeners_with_different_policies_split_a_route_by_hostname() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw }
spec:
  gatewayClassName: gatekit
  listeners:
  - { name: public, port: 80, protocol: HTTP, hostname: public.example }
  - { name: internal, port: 80, protocol: HTTP, hostname: internal.example }
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec: { ports: [{ port: 80 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r }
spec:
  parentRefs: [{ name: gw }]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]
---
apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: { name: public-limit }
spec:
  targetRefs: [{ kind: Gateway, name: gw, sectionName: public }]
  rateLimit: { rules: [{ clientSelectors: { clientIP: true }, limit: { requests: 5, unit: Second } }] }
"#;
    let t = run(yaml);
    let routes: Vec<&Route> = t.routes_for_port(80).iter().map(|r| &**r).collect();
    assert_eq!(routes.len(), 2, "{routes:#?}");
    let public = routes
        .iter()
        .find(|r| r.hostnames[..] == ["public.example"])
        .unwrap();
    let internal = routes
        .iter()
        .find(|r| r.hostnames[..] == ["internal.example"])
        .unwrap();
    assert_eq!(public.rules[0].policy.rate_limits.len(), 1);
    assert!(internal.rules[0].policy.rate_limits.is_empty());
}

// === BackendPolicy: circuit breaker and retry budget ===

#[test]
fn backend_policy_breaker_and_budget_land_on_every_backend_ref_to_the_service() {
    let yaml = format!(
        r#"{BASE}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: r }}
spec:
  parentRefs: [{{ name: gw }}]
  rules:
  - backendRefs: [{{ name: web, port: 80, weight: 9 }}, {{ name: api, port: 80, weight: 1 }}]
    filters:
    - type: RequestMirror
      requestMirror: {{ backendRef: {{ name: web, port: 80 }} }}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{ name: g }}
spec:
  parentRefs: [{{ name: gw }}]
  hostnames: [grpc.example]
  rules: [{{ backendRefs: [{{ name: web, port: 80 }}] }}]
---
apiVersion: gatekit.io/v1alpha1
kind: BackendPolicy
metadata: {{ name: web }}
spec:
  targetRefs: [{{ name: web }}]
  circuitBreaker:
    maxConnections: 100
    maxPendingRequests: 10
    maxParallelRequests: 50
    maxParallelRetries: 3
    maxRequestsPerConnection: 1000
  retryBudget:
    percent: 25
    interval: 5s
    minRetryRate: {{ count: 5, interval: 2s }}
"#
    );
    let t = run(&yaml);
    assert!(t.errors().is_empty(), "{:?}", t.errors());
    let http = &route(&t, "r").rules[0];
    let web = &http.backends[0];
    assert_eq!(web.name, "default/web:80");
    let cb = *web.breaker.clone().unwrap();
    assert_eq!(cb.max_connections, Some(100));
    assert_eq!(cb.max_pending_requests, Some(10));
    assert_eq!(cb.max_parallel_requests, Some(50));
    assert_eq!(cb.max_parallel_retries, Some(3));
    assert_eq!(cb.max_requests_per_connection, Some(1000));
    let budget = *web.retry_budget.clone().unwrap();
    assert_eq!(budget.percent, 25.0);
    assert_eq!(budget.interval, Duration::from_secs(5));
    assert_eq!(budget.min_retries_per_second, 3, "5 per 2s, rounded up");
    let api = &http.backends[1];
    assert!(
        api.breaker.is_none() && api.retry_budget.is_none(),
        "not targeted"
    );

    let grpc = &route(&t, "grpc:g").rules[0].backends[0];
    assert_eq!(
        grpc.breaker.as_deref(),
        Some(&cb),
        "GRPCRoute backendRefs too"
    );
    assert_eq!(grpc.retry_budget.as_deref(), Some(&budget));
}

#[test]
fn backend_policy_connection_timeouts_read_and_reach_the_services_upstream() {
    use gatekit_k8s::types::BackendPolicySpec;
    use gatekit_k8s::types::policy::Connection;

    let spec: BackendPolicySpec = serde_norway::from_str(
        "targetRefs: [{ name: web }]\nconnection: { connectTimeout: 2s, idleTimeout: 30s }\n",
    )
    .unwrap();
    let c = spec.connection.clone().unwrap();
    assert_eq!(
        c,
        Connection {
            connect_timeout: Some("2s".into()),
            idle_timeout: Some("30s".into()),
        }
    );
    assert_eq!(c.connect_timeout().unwrap(), Some(Duration::from_secs(2)));
    assert_eq!(c.idle_timeout().unwrap(), Some(Duration::from_secs(30)));
    assert!(spec.validate().is_ok());
    // The manifest's spelling round-trips; an omitted section stays omitted.
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(
        json["connection"],
        serde_json::json!({ "connectTimeout": "2s", "idleTimeout": "30s" })
    );
    let back: BackendPolicySpec = serde_json::from_value(json).unwrap();
    assert_eq!(back, spec);
    let bare: BackendPolicySpec = serde_norway::from_str("targetRefs: [{ name: web }]\n").unwrap();
    assert!(
        serde_json::to_value(&bare)
            .unwrap()
            .get("connection")
            .is_none()
    );

    let yaml = format!(
        r#"{BASE}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: r }}
spec:
  parentRefs: [{{ name: gw }}]
  rules: [{{ backendRefs: [{{ name: web, port: 80 }}] }}]
---
apiVersion: gatekit.io/v1alpha1
kind: BackendPolicy
metadata: {{ name: web }}
spec:
  targetRefs: [{{ name: web }}]
  connection: {{ connectTimeout: 250ms, idleTimeout: 1m }}
"#
    );
    let t = run(&yaml);
    assert!(t.errors().is_empty(), "{:?}", t.errors());
    let upstream = t.upstreams().get("default/web:80").unwrap();
    let c = upstream.policy().unwrap().connection.as_ref().unwrap();
    assert_eq!(
        c.connect_timeout().unwrap(),
        Some(Duration::from_millis(250))
    );
    assert_eq!(c.idle_timeout().unwrap(), Some(Duration::from_secs(60)));
}

// === invalid policies are load errors ===

/// Loads one policy document after a ConfigMap (so it is document 1) and returns the
/// errors.
fn refused(policy: &str) -> Vec<ManifestError> {
    let yaml = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{ name: cm }}\n---\n{policy}");
    match ResourceSet::from_documents([("policies.yaml", yaml.as_str())]) {
        Ok(_) => panic!("loaded: {policy}"),
        Err(e) => e,
    }
}

fn fields(errors: &[ManifestError]) -> Vec<&str> {
    errors.iter().filter_map(ManifestError::field).collect()
}

#[test]
fn an_invalid_traffic_policy_is_a_load_error_naming_file_document_and_field() {
    let errors = refused(
        r#"apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: { name: tp }
spec:
  targetRefs: [{ kind: Gateway, name: gw }]
  rateLimit:
    rules:
    - limit: { requests: 0, unit: Second }
"#,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(e.file(), "policies.yaml");
    assert_eq!(e.document(), Some(1));
    assert_eq!(e.kind(), Some("TrafficPolicy"));
    assert_eq!(e.namespace(), Some("default"));
    assert_eq!(e.name(), Some("tp"));
    assert_eq!(e.field(), Some("spec.rateLimit.rules[0].limit.requests"));
    assert_eq!(
        e.to_string(),
        "policies.yaml (document 1): TrafficPolicy default/tp: spec.rateLimit.rules[0].limit.requests: must be at least 1 (0 would refuse every request)"
    );

    // Every kind of bad value, all reported at once.
    let errors = refused(
        r#"apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: { name: tp, namespace: team }
spec:
  targetRefs: [{ group: example.com, kind: Gateway, name: gw }]
  retry:
    statusCodes: [503, 600]
    backoff: { baseInterval: 1 second, maxInterval: 10ms }
    maxReplayBodyBytes: 1.5m
  rateLimit:
    rules:
    - name: Bad_Name
      clientSelectors: { headers: ["x user"] }
      limit: { requests: 1, unit: Second }
      burst: 0
    - name: no-headers
      limit: { requests: 1, unit: Second }
      missingKey: { requests: 0, unit: Minute }
  limits: { maxConcurrentRequests: 0, maxRequestBodyBytes: -1 }
"#,
    );
    assert_eq!(
        fields(&errors),
        [
            "spec.targetRefs[0].group",
            "spec.retry.statusCodes[1]",
            "spec.retry.backoff.baseInterval",
            "spec.retry.maxReplayBodyBytes",
            "spec.rateLimit.rules[0].name",
            "spec.rateLimit.rules[0].clientSelectors.headers[0]",
            "spec.rateLimit.rules[0].burst",
            "spec.rateLimit.rules[1].missingKey",
            "spec.rateLimit.rules[1].missingKey.requests",
            "spec.limits.maxConcurrentRequests",
            "spec.limits.maxRequestBodyBytes",
        ],
        "{errors:#?}"
    );
    assert!(errors.iter().all(|e| e.namespace() == Some("team")));

    // Values the schema itself refuses: an unknown retryOn, a kind that cannot be
    // targeted, retriable-status-codes without statuses.
    let errors = refused(
        "apiVersion: gatekit.io/v1alpha1\nkind: TrafficPolicy\nmetadata: { name: tp }\nspec:\n  targetRefs: [{ kind: Gateway, name: gw }]\n  retry: { retryOn: [sometimes] }\n",
    );
    assert_eq!(fields(&errors), ["spec.retry.retryOn[0]"], "{errors:?}");
    let errors = refused(
        "apiVersion: gatekit.io/v1alpha1\nkind: TrafficPolicy\nmetadata: { name: tp }\nspec:\n  targetRefs: [{ kind: Service, name: web }]\n",
    );
    assert_eq!(fields(&errors), ["spec.targetRefs[0].kind"], "{errors:?}");
    let errors = refused(
        "apiVersion: gatekit.io/v1alpha1\nkind: TrafficPolicy\nmetadata: { name: tp }\nspec:\n  targetRefs: [{ kind: Gateway, name: gw }]\n  retry: { retryOn: [retriable-status-codes] }\n",
    );
    assert_eq!(fields(&errors), ["spec.retry.statusCodes"], "{errors:?}");
}

#[test]
fn an_invalid_backend_policy_is_a_load_error() {
    let errors = refused(
        r#"apiVersion: gatekit.io/v1alpha1
kind: BackendPolicy
metadata: { name: bp }
spec:
  targetRefs: [{ name: web }]
  healthCheck: { active: { type: tcp, interval: 5 minutes } }
  circuitBreaker: { maxConnections: 0 }
  retryBudget: { percent: 150, interval: 0s, minRetryRate: { count: 1, interval: soon } }
  connection: { connectTimeout: 0s, idleTimeout: a while }
"#,
    );
    assert_eq!(
        fields(&errors),
        [
            "spec.healthCheck.active.interval",
            "spec.circuitBreaker.maxConnections",
            "spec.retryBudget.percent",
            "spec.retryBudget.interval",
            "spec.retryBudget.minRetryRate.interval",
            "spec.connection.connectTimeout",
            "spec.connection.idleTimeout",
        ],
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .all(|e| e.kind() == Some("BackendPolicy") && e.name() == Some("bp"))
    );
}

/// Directories take the same path as documents: the whole load fails, naming the file.
#[test]
fn an_invalid_policy_in_a_directory_refuses_the_whole_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gw.yaml"), BASE).unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        "apiVersion: gatekit.io/v1alpha1\nkind: TrafficPolicy\nmetadata: { name: tp }\nspec:\n  targetRefs: [{ kind: Gateway, name: gw }]\n  retry: { backoff: { baseInterval: forever } }\n",
    )
    .unwrap();
    let errors = ResourceSet::from_dirs(&[dir.path().to_path_buf()]).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].file().ends_with("policy.yaml"));
    assert_eq!(errors[0].document(), Some(0));
    assert_eq!(errors[0].field(), Some("spec.retry.backoff.baseInterval"));
}

/// A hand-built set (no loader) with an invalid policy: refused alone, never applied.
#[test]
fn translation_refuses_an_invalid_policy_it_is_handed() {
    let mut set = load(&format!("{BASE}{TWO_ROUTES}")).unwrap();
    let policy: gatekit_k8s::types::TrafficPolicy = serde_norway::from_str(
        "apiVersion: gatekit.io/v1alpha1\nkind: TrafficPolicy\nmetadata: { name: tp, namespace: default }\nspec:\n  targetRefs: [{ kind: HTTPRoute, name: r }]\n  limits: { maxConcurrentRequests: 0 }\n",
    )
    .unwrap();
    set.traffic_policies.push(policy);
    let t = translate(&set, &TranslateOptions::default());
    let (ok, reason, _) = accepted(&t, "TrafficPolicy", "tp");
    assert!(!ok);
    assert_eq!(reason, "Invalid");
    assert!(
        t.errors()
            .iter()
            .any(|e| e.field() == "spec.limits.maxConcurrentRequests")
    );
    assert_eq!(
        rule(&t, "r", "a").policy.limits.max_concurrent_requests,
        None
    );
}
