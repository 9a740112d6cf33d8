//! BackendTLSPolicy translation and statuses against the Gateway API v1 spec
//! (`BackendTLSPolicySpec`, `BackendTLSPolicyValidation`, the conformance tests
//! `backendtlspolicy*.go`) and the Gateway's `spec.tls.backend.clientCertificateRef`
//! (GEP-3155): which upstreams speak TLS with what, the policy's `Accepted` and
//! `ResolvedRefs` at each Gateway, refused backends, conflicts, client certificates.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use gatekit_core::client::SubjectAltName;
use gatekit_k8s::status::{Condition, ResourceRef, ResourceStatus};
use gatekit_k8s::translate::{AppProtocol, TlsRoots};
use gatekit_k8s::{ResourceSet, TranslateOptions, Translation, Translator, translate};

/// A CA certificate, PEM (translation parses `ca.crt`).
fn ca_pem() -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().pem()
}

/// A certificate and its key, PEM.
fn leaf_pem() -> (String, String) {
    let params = rcgen::CertificateParams::new(vec!["gateway.example".to_owned()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(by)))
        .collect()
}

fn config_map(name: &str, pem: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{ name: {name}, namespace: infra }}\ndata:\n  ca.crt: |\n{}",
        indent(pem, 4)
    )
}

/// Gateway `name` on `port`, optionally presenting Secret `client` to TLS backends.
fn gateway(name: &str, port: u16, client: Option<&str>) -> String {
    let tls = client
        .map(|c| format!("  tls:\n    backend:\n      clientCertificateRef: {{ name: {c} }}\n"))
        .unwrap_or_default();
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{ name: {name}, namespace: infra }}\nspec:\n  gatewayClassName: gatekit\n  listeners: [{{ name: http, port: {port}, protocol: HTTP }}]\n{tls}"
    )
}

/// Service `name` with ports 443 (`https`, `appProtocol` as given) and 8443 (`alt`),
/// and an HTTPRoute `name` on each of `gateways` sending `/<name>` to port 443.
fn service(name: &str, app_protocol: Option<&str>, gateways: &[&str]) -> String {
    let app = app_protocol
        .map(|p| format!(", appProtocol: {p}"))
        .unwrap_or_default();
    let parents = gateways
        .iter()
        .map(|g| format!("{{ name: {g} }}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
---
apiVersion: v1
kind: Service
metadata: {{ name: {name}, namespace: infra }}
spec:
  ports: [{{ name: https, port: 443{app} }}, {{ name: alt, port: 8443 }}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{ name: {name}-1, namespace: infra, labels: {{ kubernetes.io/service-name: {name} }} }}
addressType: IPv4
ports: [{{ name: https, port: 8443 }}]
endpoints: [{{ addresses: ["10.0.0.1"] }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: {name}, namespace: infra }}
spec:
  parentRefs: [{parents}]
  rules:
  - matches: [{{ path: {{ type: PathPrefix, value: "/{name}" }} }}]
    backendRefs: [{{ name: {name}, port: 443 }}]
"#
    )
}

/// BackendTLSPolicy `name` (created at `created`) on `target` (`svc` or
/// `svc/section`) with `validation` (YAML lines indented by four spaces).
fn policy(name: &str, created: &str, target: &str, validation: &str) -> String {
    let (svc, section) = match target.split_once('/') {
        Some((s, section)) => (s, format!(", sectionName: {section}")),
        None => (target, String::new()),
    };
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {{ name: {name}, namespace: infra, generation: 2, creationTimestamp: \"{created}\" }}\nspec:\n  targetRefs: [{{ group: \"\", kind: Service, name: {svc}{section} }}]\n  validation:\n{validation}"
    )
}

const VALID: &str = "    caCertificateRefs: [{ group: \"\", kind: ConfigMap, name: ca }]\n    hostname: abc.example.com\n";
const T1: &str = "2024-01-01T00:00:00Z";
const T2: &str = "2024-01-02T00:00:00Z";

fn load(yaml: &str) -> ResourceSet {
    let (set, warnings) =
        ResourceSet::from_documents([("fixture.yaml", yaml)]).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    set
}

fn run(yaml: &str) -> Translation {
    translate(&load(yaml), &TranslateOptions::default())
}

fn status<'t>(t: &'t Translation, kind: &str, name: &str) -> &'t ResourceStatus {
    t.status(kind, Some("infra"), name)
        .unwrap_or_else(|| panic!("no status of {kind} {name}: {:#?}", t.statuses()))
}

/// (type, status, reason) of a condition.
type Brief = (String, &'static str, String);

/// (type, status, reason) of a condition.
fn brief(c: &Condition) -> Brief {
    (
        c.type_().to_owned(),
        c.status().as_str(),
        c.reason().to_owned(),
    )
}

fn cond(type_: &str, ok: bool, reason: &str) -> Brief {
    (
        type_.to_owned(),
        if ok { "True" } else { "False" },
        reason.to_owned(),
    )
}

/// The policy's conditions at each ancestor: (ancestor kind/name, conditions).
fn at_ancestors(t: &Translation, name: &str) -> Vec<(String, Vec<Brief>)> {
    status(t, "BackendTLSPolicy", name)
        .ancestors()
        .iter()
        .map(|a| {
            (
                format!("{}/{}", a.ancestor().kind, a.ancestor().name),
                a.conditions().iter().map(brief).collect(),
            )
        })
        .collect()
}

fn route_resolved(t: &Translation, name: &str) -> Vec<Brief> {
    status(t, "HTTPRoute", name)
        .parents()
        .iter()
        .map(|p| brief(p.condition("ResolvedRefs").unwrap()))
        .collect()
}

#[test]
fn a_valid_policy_is_accepted_at_every_gateway_whose_routes_reach_the_service() {
    let t = run(&format!(
        "{}{}{}{}{}",
        gateway("gw1", 80, None),
        gateway("gw2", 81, None),
        config_map("ca", &ca_pem()),
        service("svc", Some("HTTPS"), &["gw1", "gw2"]),
        policy("p", T1, "svc", VALID),
    ));
    let ok = vec![
        cond("Accepted", true, "Accepted"),
        cond("ResolvedRefs", true, "ResolvedRefs"),
    ];
    assert_eq!(
        at_ancestors(&t, "p"),
        [
            ("Gateway/gw1".to_owned(), ok.clone()),
            ("Gateway/gw2".to_owned(), ok.clone())
        ]
    );
    let generation =
        status(&t, "BackendTLSPolicy", "p").ancestors()[0].conditions()[0].observed_generation();
    assert_eq!(generation, Some(2));
    assert_eq!(
        route_resolved(&t, "svc"),
        [
            cond("ResolvedRefs", true, "ResolvedRefs"),
            cond("ResolvedRefs", true, "ResolvedRefs")
        ]
    );
    let spec = &t.upstreams()["infra/svc:443"];
    assert_eq!(spec.app_protocol(), AppProtocol::Https);
    let tls = spec.tls().unwrap();
    assert_eq!(tls.hostname(), "abc.example.com");
    assert!(tls.subject_alt_names().is_empty());
    assert!(matches!(tls.roots(), TlsRoots::Pem(_)));
    assert_eq!(
        tls.policy(),
        &ResourceRef::of_kind("BackendTLSPolicy", Some("infra"), "p").unwrap()
    );
    assert!(tls.client_certificate().is_none());
}

#[test]
fn subject_alt_names_and_system_roots_reach_the_upstream() {
    let validation = "    wellKnownCACertificates: System\n    hostname: abc.example.com\n    subjectAltNames:\n    - { type: Hostname, hostname: other.example.com }\n    - { type: URI, uri: \"spiffe://cluster.local/ns/infra/sa/svc\" }\n";
    let t = run(&format!(
        "{}{}{}",
        gateway("gw", 80, None),
        service("svc", None, &["gw"]),
        policy("p", T1, "svc", validation),
    ));
    assert_eq!(
        at_ancestors(&t, "p")[0].1,
        [
            cond("Accepted", true, "Accepted"),
            cond("ResolvedRefs", true, "ResolvedRefs")
        ]
    );
    let tls = t.upstreams()["infra/svc:443"].tls().unwrap();
    assert_eq!(tls.roots(), &TlsRoots::System);
    assert_eq!(
        tls.subject_alt_names(),
        [
            SubjectAltName::Dns("other.example.com".to_owned()),
            SubjectAltName::Uri("spiffe://cluster.local/ns/infra/sa/svc".to_owned())
        ]
    );
}

#[test]
fn invalid_ca_references_are_refused_and_their_backends_answer_500() {
    let cases = [
        // (policy, its caCertificateRefs, ResolvedRefs reason)
        (
            "nonexistent",
            "[{ group: \"\", kind: ConfigMap, name: nowhere }]",
            "InvalidCACertificateRef",
        ),
        (
            "malformed",
            "[{ group: \"\", kind: ConfigMap, name: empty }]",
            "InvalidCACertificateRef",
        ),
        (
            "garbage",
            "[{ group: \"\", kind: ConfigMap, name: garbage }]",
            "InvalidCACertificateRef",
        ),
        (
            "kind",
            "[{ group: \"\", kind: Pod, name: ca }]",
            "InvalidKind",
        ),
    ];
    let mut yaml = format!(
        "{}{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{ name: empty, namespace: infra }}\ndata: {{}}\n{}",
        gateway("gw", 80, None),
        config_map("ca", &ca_pem()),
        config_map(
            "garbage",
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----"
        ),
    );
    for (name, refs, _) in cases {
        yaml.push_str(&service(name, Some("https"), &["gw"]));
        yaml.push_str(&policy(
            name,
            T1,
            name,
            &format!("    caCertificateRefs: {refs}\n    hostname: abc.example.com\n"),
        ));
    }
    let t = run(&yaml);
    for (name, _, reason) in cases {
        assert_eq!(
            at_ancestors(&t, name),
            [(
                "Gateway/gw".to_owned(),
                vec![
                    cond("Accepted", false, "NoValidCACertificate"),
                    cond("ResolvedRefs", false, reason)
                ]
            )],
            "{name}"
        );
        // Never cleartext: the backendRef is refused, its share answers 500.
        assert_eq!(
            route_resolved(&t, name),
            [cond("ResolvedRefs", false, "InvalidBackendTLSPolicy")],
            "{name}"
        );
        assert!(
            !t.upstreams()
                .keys()
                .any(|k| k.contains(&format!("/{name}:"))),
            "{name}: {:?}",
            t.upstreams().keys()
        );
    }
    let message = status(&t, "BackendTLSPolicy", "nonexistent").ancestors()[0].conditions()[1]
        .message()
        .to_owned();
    assert!(
        message.contains("ConfigMap infra/nowhere not found"),
        "{message}"
    );
}

#[test]
fn invalid_validation_fields_are_not_accepted() {
    let cases = [
        (
            "unknown-roots",
            "    wellKnownCACertificates: example.com/roots\n    hostname: abc.example.com\n",
        ),
        (
            "both",
            "    wellKnownCACertificates: System\n    caCertificateRefs: [{ group: \"\", kind: ConfigMap, name: ca }]\n    hostname: abc.example.com\n",
        ),
        ("neither", "    hostname: abc.example.com\n"),
        (
            "san-without-value",
            "    wellKnownCACertificates: System\n    hostname: abc.example.com\n    subjectAltNames: [{ type: URI }]\n",
        ),
        (
            "bad-hostname",
            "    wellKnownCACertificates: System\n    hostname: \"*.example.com\"\n",
        ),
    ];
    let mut yaml = format!("{}{}", gateway("gw", 80, None), config_map("ca", &ca_pem()));
    for (name, validation) in cases {
        yaml.push_str(&service(name, None, &["gw"]));
        yaml.push_str(&policy(name, T1, name, validation));
    }
    let t = run(&yaml);
    for (name, _) in cases {
        let conditions = &at_ancestors(&t, name)[0].1;
        assert_eq!(conditions[0], cond("Accepted", false, "Invalid"), "{name}");
        assert_eq!(
            route_resolved(&t, name),
            [cond("ResolvedRefs", false, "InvalidBackendTLSPolicy")],
            "{name}"
        );
    }
}

#[test]
fn the_older_policy_wins_a_target_and_a_section_does_not_conflict_with_the_whole() {
    let other = "    caCertificateRefs: [{ group: \"\", kind: ConfigMap, name: ca }]\n    hostname: other.example.com\n";
    let t = run(&format!(
        "{}{}{}{}{}{}{}{}{}{}",
        gateway("gw", 80, None),
        config_map("ca", &ca_pem()),
        service("whole", None, &["gw"]),
        // The newer is listed first: age decides, not order.
        policy("whole-2", T2, "whole", other),
        policy("whole-1", T1, "whole", VALID),
        service("section", None, &["gw"]),
        policy("section-1", T1, "section/https", VALID),
        policy("section-2", T2, "section/https", other),
        service("mixed", None, &["gw"]),
        policy("mixed-section", T2, "mixed/https", other)
            + &policy("mixed-whole", T1, "mixed", VALID),
    ));
    let accepted = cond("Accepted", true, "Accepted");
    let conflicted = cond("Accepted", false, "Conflicted");
    for (name, want) in [
        ("whole-1", &accepted),
        ("whole-2", &conflicted),
        ("section-1", &accepted),
        ("section-2", &conflicted),
        ("mixed-section", &accepted),
        ("mixed-whole", &accepted),
    ] {
        assert_eq!(&at_ancestors(&t, name)[0].1[0], want, "{name}");
    }
    let message = at_ancestors(&t, "whole-2");
    assert_eq!(message[0].0, "Gateway/gw");
    let hostname = |n: &str| t.upstreams()[n].tls().unwrap().hostname().to_owned();
    assert_eq!(hostname("infra/whole:443"), "abc.example.com");
    assert_eq!(hostname("infra/section:443"), "abc.example.com");
    // The port's own policy beats the whole Service's.
    assert_eq!(hostname("infra/mixed:443"), "other.example.com");
}

#[test]
fn a_missing_target_or_port_is_target_not_found() {
    let t = run(&format!(
        "{}{}{}{}{}",
        gateway("gw", 80, None),
        config_map("ca", &ca_pem()),
        service("svc", None, &["gw"]),
        policy("nosvc", T1, "ghost", VALID),
        policy("noport", T1, "svc/nope", VALID),
    ));
    for name in ["nosvc", "noport"] {
        let s = status(&t, "BackendTLSPolicy", name);
        assert_eq!(
            brief(s.condition("Accepted").unwrap()),
            cond("Accepted", false, "TargetNotFound"),
            "{name}"
        );
    }
    // Not covered: the Service stays cleartext HTTP/1.1.
    assert!(t.upstreams()["infra/svc:443"].tls().is_none());
}

#[test]
fn https_and_wss_ports_are_served_only_under_a_policy_and_grpc_speaks_h2_over_tls() {
    let grpc_route = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: g, namespace: infra }
spec:
  parentRefs: [{ name: gw }]
  rules: [{ backendRefs: [{ name: grpc, port: 443 }] }]
"#;
    let t = run(&format!(
        "{}{}{}{}{}{}{}{}{}",
        gateway("gw", 80, None),
        config_map("ca", &ca_pem()),
        service("covered", Some("https"), &["gw"]),
        policy("covered", T1, "covered", VALID),
        service("wss", Some("kubernetes.io/wss"), &["gw"]),
        policy("wss", T1, "wss", VALID),
        service("bare", Some("https"), &["gw"]),
        service("grpc", None, &[]) + grpc_route,
        policy("grpc", T1, "grpc", VALID),
    ));
    assert_eq!(
        t.upstreams()["infra/covered:443"].app_protocol(),
        AppProtocol::Https
    );
    assert_eq!(
        t.upstreams()["infra/wss:443"].app_protocol(),
        AppProtocol::Https
    );
    assert_eq!(
        t.upstreams()["infra/grpc:443"].app_protocol(),
        AppProtocol::H2
    );
    assert!(!t.upstreams().contains_key("infra/bare:443"));
    assert_eq!(
        route_resolved(&t, "bare"),
        [cond("ResolvedRefs", false, "UnsupportedProtocol")]
    );
}

#[test]
fn gateway_client_certificates_key_the_upstreams_of_their_routes() {
    let (cert, key) = leaf_pem();
    let secret = |name: &str| {
        format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{ name: {name}, namespace: infra }}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            indent(&cert, 4),
            indent(&key, 4)
        )
    };
    let t = run(&format!(
        "{}{}{}{}{}{}{}{}",
        gateway("mtls", 80, Some("client")),
        gateway("plain", 81, None),
        gateway("broken", 82, Some("nowhere")),
        secret("client"),
        config_map("ca", &ca_pem()),
        service("svc", None, &["mtls", "plain", "broken"]),
        policy("p", T1, "svc", VALID),
        service("clear", None, &["mtls"]),
    ));
    let gw = |name: &str| {
        brief(
            status(&t, "Gateway", name)
                .condition("ResolvedRefs")
                .unwrap(),
        )
    };
    assert_eq!(gw("mtls"), cond("ResolvedRefs", true, "ResolvedRefs"));
    assert_eq!(
        gw("broken"),
        cond("ResolvedRefs", false, "InvalidClientCertificateRef")
    );
    assert!(
        status(&t, "Gateway", "plain")
            .condition("ResolvedRefs")
            .is_none()
    );
    let names: BTreeSet<&str> = t.upstreams().keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "infra/clear:443",
            "infra/svc:443",
            "infra/svc:443@client=infra/client"
        ])
    );
    let keyed = t.upstreams()["infra/svc:443@client=infra/client"]
        .tls()
        .unwrap();
    assert_eq!(
        keyed.client_certificate().unwrap().secret(),
        &ResourceRef::of_kind("Secret", Some("infra"), "client").unwrap()
    );
    assert!(
        t.upstreams()["infra/svc:443"]
            .tls()
            .unwrap()
            .client_certificate()
            .is_none()
    );
    // A cleartext Service keeps one upstream whatever the Gateway's certificate.
    assert!(t.upstreams()["infra/clear:443"].tls().is_none());
    // Each Gateway's route names its own upstream.
    let backends = |port: u16| -> Vec<String> {
        t.routes_for_port(port)
            .iter()
            .filter(|r| r.id.name() == "svc")
            .flat_map(|r| r.rules.iter().flat_map(|rule| rule.backends.iter()))
            .map(|b| b.name.clone())
            .collect()
    };
    assert_eq!(backends(80), ["infra/svc:443@client=infra/client"]);
    assert_eq!(backends(81), ["infra/svc:443"]);
    assert_eq!(backends(82), ["infra/svc:443"]);
}

#[test]
fn a_config_map_change_is_translated_in_full_and_fixes_the_policy() {
    let base = format!(
        "{}{}{}",
        gateway("gw", 80, None),
        service("svc", None, &["gw"]),
        policy("p", T1, "svc", VALID),
    );
    let mut translator = Translator::new(TranslateOptions::default());
    let before = translator.translate(&load(&base), None);
    assert_eq!(
        at_ancestors(&before, "p")[0].1[0],
        cond("Accepted", false, "NoValidCACertificate")
    );
    let fixed = load(&format!("{base}{}", config_map("ca", &ca_pem())));
    let changed = BTreeSet::from([ResourceRef::of_kind("ConfigMap", Some("infra"), "ca").unwrap()]);
    let after = translator.translate(&fixed, Some(&changed));
    assert_eq!(
        at_ancestors(&after, "p")[0].1,
        [
            cond("Accepted", true, "Accepted"),
            cond("ResolvedRefs", true, "ResolvedRefs")
        ]
    );
    assert!(after.upstreams()["infra/svc:443"].tls().is_some());
    assert_eq!(
        format!("{after:?}"),
        format!("{:?}", translate(&fixed, &TranslateOptions::default()))
    );
}
