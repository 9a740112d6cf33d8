//! Shared by the status tests that assert statuses field by field: translation of a
//! YAML fixture, TLS Secret fixtures, and conditions as comparable tuples.
#![allow(dead_code)]

use gatekit_k8s::status::Condition;
use gatekit_k8s::{ResourceSet, TranslateOptions, Translation, translate};

/// A real self-signed pair (P-256, valid until 2125), as YAML-escaped text: translation
/// checks that the key is the certificate's and that it is valid now.
pub(crate) const PEM_CERT: &str = "-----BEGIN CERTIFICATE-----\\nMIIBjjCCATOgAwIBAgIUNe1KjXf2EOQPbS/5AVuuJJlRmZ0wCgYIKoZIzj0EAwIw\\nDzENMAsGA1UEAwwEdGVzdDAgFw0yNjEyMDYxODA3NDhaGA8yMTI2MTExMjE4MDc0\\nOFowDzENMAsGA1UEAwwEdGVzdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNlj\\nv7LULGEPAy7SOw4CVsQ2BaVWOcWOC9J/u683FM2UwO0unQ9sm4f2ZJ1pEOvS0T4b\\nSA94LHarm/cIBHdwvDejazBpMB0GA1UdDgQWBBSeWrJ73VYaZWP7XfegPwlstcTU\\nKTAfBgNVHSMEGDAWgBSeWrJ73VYaZWP7XfegPwlstcTUKTAPBgNVHRMBAf8EBTAD\\nAQH/MBYGA1UdEQQPMA2CC2V4YW1wbGUuY29tMAoGCCqGSM49BAMCA0kAMEYCIQDP\\n/4Xnad2AGV1E9FqJGS/FUcRrNqKosA77wkQ5SyKwwQIhAKchS1HD+uLAa6CwEIPd\\nM3sNe5ohBp+ax4qlebisW2BV\\n-----END CERTIFICATE-----\\n";
pub(crate) const PEM_KEY: &str = "-----BEGIN PRIVATE KEY-----\\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgHRYGKZMBZqMQ5Jvc\\nicmmLnvoZWtZS0erP+GW9hAxEX+hRANCAATZY7+y1CxhDwMu0jsOAlbENgWlVjnF\\njgvSf7uvNxTNlMDtLp0PbJuH9mSdaRDr0tE+G0gPeCx2q5v3CAR3cLw3\\n-----END PRIVATE KEY-----\\n";

/// Translates `yaml` (which must load without warnings) with the default options.
pub(crate) fn run(yaml: &str) -> Translation {
    let (set, warnings) =
        ResourceSet::from_documents([("fixture.yaml", yaml)]).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    translate(&set, &TranslateOptions::default())
}

/// A `kubernetes.io/tls` Secret document (with a leading `---`).
pub(crate) fn secret(ns: &str, name: &str) -> String {
    format!(
        r#"
---
apiVersion: v1
kind: Secret
metadata: {{ name: {name}, namespace: {ns} }}
type: kubernetes.io/tls
stringData:
  tls.crt: "{PEM_CERT}"
  tls.key: "{PEM_KEY}"
"#
    )
}

/// (type, status, reason, message, observedGeneration) of a condition.
pub(crate) type Cond = (String, &'static str, String, String, Option<i64>);

/// Every condition of `cs`, in order.
pub(crate) fn conds(cs: &[Condition]) -> Vec<Cond> {
    cs.iter()
        .map(|c| {
            (
                c.type_().to_owned(),
                c.status().as_str(),
                c.reason().to_owned(),
                c.message().to_owned(),
                c.observed_generation(),
            )
        })
        .collect()
}

/// The condition expected: `True` when `ok`.
pub(crate) fn c(type_: &str, ok: bool, reason: &str, message: &str, generation: i64) -> Cond {
    (
        type_.to_owned(),
        if ok { "True" } else { "False" },
        reason.to_owned(),
        message.to_owned(),
        Some(generation),
    )
}
