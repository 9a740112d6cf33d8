//! PATCH bodies: JSON merge patch (RFC 7386), strategic merge patch, JSON patch (RFC 6902)
//! and server-side apply.
//!
//! Trade-offs, on purpose:
//! - Strategic merge is treated as a merge patch after its directives are handled: a
//!   `{"$patch": "delete"}` object deletes its key, other `$`-prefixed keys (`$patch: replace`,
//!   `$retainKeys`, `$setElementOrder/…`, `$deleteFromPrimitiveList/…`) are stripped. Lists
//!   therefore replace instead of merging by key; none of the registered types' controllers
//!   in gatekit rely on keyed list merges.
//! - Apply is a merge of the applied configuration into the live object (or a create). Field
//!   ownership and the removal of fields a manager stopped applying are not modelled.

use serde_json::Value;

use crate::status::ApiError;

/// A PATCH flavour, from the request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Merge,
    Strategic,
    Json,
    Apply,
}

impl PatchKind {
    /// The flavour of a `Content-Type` value (parameters ignored).
    pub(crate) fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/json-patch+json" => Some(Self::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// Parses a patch body: JSON for every flavour (kube-rs sends JSON even for apply, which is a
/// YAML superset).
pub(crate) fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid patch body: {e}")))
}

/// Applies `patch` to `doc` in place.
pub(crate) fn apply_patch(kind: PatchKind, doc: &mut Value, patch: &Value) -> Result<(), ApiError> {
    match kind {
        PatchKind::Merge | PatchKind::Apply => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            json_patch::merge(doc, patch);
        }
        PatchKind::Strategic => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "a strategic merge patch must be a JSON object",
                ));
            }
            let mut p = patch.clone();
            strip_directives(&mut p);
            json_patch::merge(doc, &p);
        }
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(doc, &ops).map_err(|e| {
                ApiError::invalid(format!("the JSON patch could not be applied: {e}"))
            })?;
        }
    }
    Ok(())
}

/// Handles strategic-merge directives so that a plain merge patch remains.
fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.get("$patch").and_then(Value::as_str) == Some("delete") {
                *v = Value::Null;
                return;
            }
            map.retain(|k, _| !k.starts_with('$'));
            for child in map.values_mut() {
                strip_directives(child);
            }
        }
        Value::Array(items) => {
            items.retain(|i| i.get("$patch").and_then(Value::as_str) != Some("delete"));
            for i in items {
                strip_directives(i);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_null_deletes_arrays_replace() {
        let mut d = json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]});
        apply_patch(
            PatchKind::Merge,
            &mut d,
            &json!({"a": null, "b": {"c": 5}, "l": [9]}),
        )
        .unwrap();
        assert_eq!(d, json!({"b": {"c": 5, "d": 3}, "l": [9]}));
    }

    #[test]
    fn strategic_directives() {
        let mut d = json!({"spec": {"x": {"y": 1}, "z": 2}});
        let p = json!({"spec": {"x": {"$patch": "delete"}, "$retainKeys": ["z"], "z": 3}});
        apply_patch(PatchKind::Strategic, &mut d, &p).unwrap();
        assert_eq!(d, json!({"spec": {"z": 3}}));
    }

    #[test]
    fn json_patch_ops_and_test_failure() {
        let mut d = json!({"metadata": {"name": "a"}, "spec": {"n": 1}});
        let p = json!([{"op": "replace", "path": "/spec/n", "value": 2}, {"op": "add", "path": "/spec/m", "value": 3}]);
        apply_patch(PatchKind::Json, &mut d, &p).unwrap();
        assert_eq!(d["spec"], json!({"n": 2, "m": 3}));
        let t = json!([{"op": "test", "path": "/spec/n", "value": 7}]);
        assert_eq!(
            apply_patch(PatchKind::Json, &mut d, &t).unwrap_err().code,
            422
        );
        assert_eq!(
            apply_patch(PatchKind::Json, &mut d, &json!({"op": 1}))
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(
            PatchKind::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchKind::Merge)
        );
        assert_eq!(PatchKind::from_content_type("application/json"), None);
    }
}
