//! Manifest loading: multi-document YAML, JSON, errors that say where, warnings.
#![allow(clippy::unwrap_used)]

use gatekit_k8s::ResourceSet;
use gatekit_k8s::types::Object;

#[test]
fn loads_kinds_defaults_namespace_and_warns_on_unknown_kinds() {
    let yaml = r#"
apiVersion: apps/v1
kind: Deployment
metadata: { name: web }
---
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: { name: g, namespace: other }
spec:
  from: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default }]
  to: [{ group: "", kind: Service }]
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: { name: web }
  spec: { ports: [{ port: 80 }] }
"#;
    let json = r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team", "labels": {"a": "b"}}}"#;
    let (set, warnings) =
        ResourceSet::from_documents([("app.yaml", yaml), ("ns.json", json)]).unwrap();
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].file(), "app.yaml");
    assert_eq!(warnings[0].document(), 0);
    assert_eq!(warnings[0].kind(), "Deployment");
    assert!(warnings[0].to_string().contains("skipped"));
    assert_eq!(set.reference_grants.len(), 1);
    assert_eq!(
        set.reference_grants[0].metadata.namespace.as_deref(),
        Some("other")
    );
    assert_eq!(set.services[0].namespace(), Some("default"));
    assert_eq!(set.namespaces[0].metadata.namespace, None);
    assert_eq!(set.namespaces[0].metadata.name.as_deref(), Some("team"));
}

#[test]
fn wrong_field_type_names_file_document_resource_and_field() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: { name: ok }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: infra }
spec:
  gatewayClassName: gatekit
  listeners:
  - { name: http, port: eighty, protocol: HTTP }
"#;
    let errors = ResourceSet::from_documents([("gw.yaml", yaml)]).unwrap_err();
    assert_eq!(errors.len(), 1);
    let e = &errors[0];
    assert_eq!(e.file(), "gw.yaml");
    assert_eq!(e.document(), Some(1));
    assert_eq!(e.kind(), Some("Gateway"));
    assert_eq!(e.namespace(), Some("infra"));
    assert_eq!(e.name(), Some("gw"));
    assert_eq!(e.field(), Some("spec.listeners[0].port"));
    assert!(e.reason().contains("eighty"), "{}", e.reason());
    assert!(
        e.to_string()
            .starts_with("gw.yaml (document 1): Gateway infra/gw: spec.listeners[0].port: "),
        "{e}"
    );
}

#[test]
fn bad_yaml_missing_fields_and_duplicates_are_all_reported() {
    let bad_yaml = "apiVersion: v1\nkind: Service\nmetadata: { name: a }\n---\nkind: [unclosed\n";
    let no_kind = "apiVersion: v1\nmetadata: { name: x }\n";
    let no_name = "apiVersion: v1\nkind: Service\nmetadata: {}\n";
    let dup = "apiVersion: v1\nkind: Service\nmetadata: { name: a }\n";
    let bad_json = "{\"apiVersion\": ";
    let errors = ResourceSet::from_documents([
        ("bad.yaml", bad_yaml),
        ("nokind.yaml", no_kind),
        ("noname.yaml", no_name),
        ("dup.yaml", dup),
        ("bad.json", bad_json),
    ])
    .unwrap_err();
    let find = |file: &str| errors.iter().find(|e| e.file() == file).unwrap();
    let e = find("bad.yaml");
    assert_eq!(e.document(), Some(1));
    assert!(e.reason().contains("invalid YAML"), "{e}");
    assert!(
        e.reason().contains("line"),
        "YAML errors carry a position: {e}"
    );
    assert_eq!(find("nokind.yaml").field(), Some("kind"));
    let e = find("noname.yaml");
    assert_eq!(
        (e.kind(), e.field()),
        (Some("Service"), Some("metadata.name"))
    );
    let e = find("dup.yaml");
    assert!(
        e.reason().contains("duplicate") && e.reason().contains("bad.yaml (document 0)"),
        "{e}"
    );
    assert!(find("bad.json").reason().contains("invalid JSON"));
    assert_eq!(errors.len(), 5);
}

#[test]
fn from_dirs_walks_yaml_yml_json_and_skips_hidden_entries() {
    let dir = std::env::temp_dir().join(format!("gatekit-k8s-manifest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::create_dir_all(dir.join("..data")).unwrap();
    let svc = |name: &str| format!("apiVersion: v1\nkind: Service\nmetadata: {{ name: {name} }}\n");
    std::fs::write(dir.join("a.yaml"), svc("a")).unwrap();
    std::fs::write(dir.join("sub/b.yml"), svc("b")).unwrap();
    std::fs::write(
        dir.join("c.json"),
        r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"c"}}"#,
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "not: yaml: at: all").unwrap();
    // A ConfigMap-volume style hidden copy would be a duplicate if it were read.
    std::fs::write(dir.join("..data/a.yaml"), svc("a")).unwrap();
    let (set, warnings) = ResourceSet::from_dirs(std::slice::from_ref(&dir)).unwrap();
    let mut names: Vec<_> = set.services.iter().map(|s| s.name().to_owned()).collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(warnings.is_empty());

    std::fs::write(
        dir.join("sub/broken.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: { name: [x] }\n",
    )
    .unwrap();
    let errors = ResourceSet::from_dirs(std::slice::from_ref(&dir)).unwrap_err();
    assert!(
        errors[0].file().ends_with("sub/broken.yaml"),
        "{}",
        errors[0]
    );
    assert_eq!(errors[0].field(), Some("metadata.name"));

    let missing = ResourceSet::from_dirs(&[dir.join("nope")]).unwrap_err();
    assert!(missing[0].reason().contains("cannot read directory"));
    std::fs::remove_dir_all(&dir).unwrap();
}
