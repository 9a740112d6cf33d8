//! Envoy Gateway ClientTrafficPolicy translation: settings per listener, precedence,
//! conflicts, refused values and fields, and the policy status.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "support/status.rs"]
mod support;

use gatekit_core::proxy::ForwardClientCertMode;
use gatekit_k8s::Translation;
use support::{run, secret};

fn gateway() -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: infra }}
spec:
  gatewayClassName: gatekit
  listeners:
  - {{ name: a, port: 443, protocol: HTTPS, hostname: a.test, tls: {{ certificateRefs: [{{ name: cert }}] }} }}
  - {{ name: b, port: 443, protocol: HTTPS, hostname: b.test, tls: {{ certificateRefs: [{{ name: cert }}] }} }}
{}"#,
        secret("infra", "cert")
    )
}

fn policy(name: &str, created: &str, section: Option<&str>, spec: &str) -> String {
    let section = section.map_or(String::new(), |s| format!(", sectionName: {s}"));
    format!(
        "---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: ClientTrafficPolicy\n\
         metadata: {{ name: {name}, namespace: infra, creationTimestamp: \"{created}\" }}\n\
         spec:\n  targetRefs: [{{ group: gateway.networking.k8s.io, kind: Gateway, name: gw{section} }}]\n{spec}"
    )
}

fn accepted(t: &Translation, name: &str) -> (String, String, String) {
    let s = t
        .statuses()
        .iter()
        .find(|s| s.resource().kind() == "ClientTrafficPolicy" && s.resource().name() == name)
        .unwrap();
    let c = s.condition("Accepted").unwrap();
    (
        format!("{:?}", c.status()),
        c.reason().to_owned(),
        c.message().to_owned(),
    )
}

#[test]
fn a_listener_policy_wins_over_the_gateways_and_a_second_one_conflicts() {
    let yaml = gateway()
        + &policy(
            "whole",
            "2024-01-01T00:00:00Z",
            None,
            "  tls: { minVersion: \"1.3\" }\n",
        )
        + &policy(
            "only-b",
            "2024-01-02T00:00:00Z",
            Some("b"),
            "  headers: { xForwardedClientCert: { mode: AppendForward, certDetailsToAdd: [URI] } }\n",
        )
        + &policy(
            "late",
            "2024-01-03T00:00:00Z",
            Some("b"),
            "  tls: { alpnProtocols: [h2] }\n",
        );
    let t = run(&yaml);
    let port = &t.listeners()[0];
    let a = port.listeners().iter().find(|l| l.name() == "a").unwrap();
    let b = port.listeners().iter().find(|l| l.name() == "b").unwrap();
    let a_tls = a.tls_settings().unwrap();
    assert_eq!(
        a_tls.forward_client_cert_policy().mode,
        ForwardClientCertMode::SanitizeSet
    );
    assert_ne!(
        **a_tls,
        gatekit_core::tls::ListenerTls::default(),
        "minVersion 1.3 applied"
    );
    let b_tls = b.tls_settings().unwrap();
    assert_eq!(
        b_tls.forward_client_cert_policy().mode,
        ForwardClientCertMode::AppendForward
    );
    assert!(b_tls.forward_client_cert_policy().details.uri);
    assert!(!b_tls.forward_client_cert_policy().details.subject);
    assert_eq!(accepted(&t, "whole").0, "True");
    assert_eq!(accepted(&t, "only-b").0, "True");
    let late = accepted(&t, "late");
    assert_eq!(
        (late.0.as_str(), late.1.as_str()),
        ("False", "Conflicted"),
        "{late:?}"
    );
    assert!(late.2.contains("infra/only-b"), "{late:?}");
}

#[test]
fn refused_values_and_fields_name_themselves() {
    let yaml = gateway()
        + &policy(
            "old-tls",
            "2024-01-01T00:00:00Z",
            Some("a"),
            "  tls: { minVersion: \"1.1\", ciphers: [AES128-SHA] }\n",
        )
        + &policy(
            "timeouts",
            "2024-01-02T00:00:00Z",
            Some("b"),
            "  timeout: { http: { idleTimeout: 5s } }\n",
        );
    let t = run(&yaml);
    let (status, reason, message) = accepted(&t, "old-tls");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Invalid"));
    assert!(
        message.contains("spec.tls.minVersion") && message.contains("rustls"),
        "{message}"
    );
    assert!(
        message.contains("spec.tls.ciphers[0]") && message.contains("AES128-SHA"),
        "{message}"
    );
    let (status, reason, message) = accepted(&t, "timeouts");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Unsupported"));
    assert!(message.contains("timeout"), "{message}");
    // Neither applies: the listeners keep gatekit's defaults and are served.
    let port = &t.listeners()[0];
    assert!(port.listeners().iter().all(|l| l.tls_settings().is_none()));
    assert_eq!(port.listeners().len(), 2);
    assert!(
        t.errors()
            .iter()
            .any(|e| e.field() == "spec.tls.ciphers[0]")
    );
}

#[test]
fn a_refused_policy_asking_for_client_certificates_withholds_its_listener() {
    let yaml = gateway()
        + &policy(
            "mtls",
            "2024-01-01T00:00:00Z",
            Some("a"),
            "  tls: { clientValidation: { caCertificateRefs: [{ kind: ConfigMap, name: missing }] } }\n",
        );
    let t = run(&yaml);
    let (status, reason, message) = accepted(&t, "mtls");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Invalid"));
    assert!(
        message.contains("ConfigMap infra/missing not found"),
        "{message}"
    );
    let port = &t.listeners()[0];
    let names: Vec<&str> = port.listeners().iter().map(|l| l.name()).collect();
    assert_eq!(
        names,
        ["b"],
        "listener a is not served without its client validation"
    );
}
