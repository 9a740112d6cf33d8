//! Shared by the status tests that assert statuses field by field: translation of a
//! YAML fixture, TLS Secret fixtures, and conditions as comparable tuples.
#![allow(dead_code)]

use gatekit_k8s::status::Condition;
use gatekit_k8s::{ResourceSet, TranslateOptions, Translation, translate};

/// Certificate and key placeholders (translation checks Secrets' shape, not their PEM).
pub(crate) const PEM_CERT: &str =
    "-----BEGIN CERTIFICATE-----\\nMIIBfake\\n-----END CERTIFICATE-----\\n";
pub(crate) const PEM_KEY: &str =
    "-----BEGIN PRIVATE KEY-----\\nMIIEfake\\n-----END PRIVATE KEY-----\\n";

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
