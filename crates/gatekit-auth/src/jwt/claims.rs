//! Reading claims of a verified token: by dotted path, and the OAuth `scope` test.
//!
//! Used by the JWT layer for claims-to-headers and by authorization rules on
//! [`VerifiedClaims`](crate::VerifiedClaims).

use serde_json::{Map, Value};

/// The claim at `path` in `claims`. A claim whose name is exactly `path` wins;
/// otherwise `path` is split on `.` and followed through nested objects
/// (`realm_access.roles`), as Envoy Gateway's `claimToHeaders` does.
pub fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// Whether the claim at `path` contains `item`: a space-separated string (OAuth 2.0
/// `scope`, RFC 8693 section 4.2) holding it as one of its words, or an array holding
/// it as one of its strings (`scp`, `groups`, `roles`).
pub fn contains(claims: &Map<String, Value>, path: &str, item: &str) -> bool {
    match claim(claims, path) {
        Some(Value::String(s)) => s.split_ascii_whitespace().any(|w| w == item),
        Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(item)),
        _ => false,
    }
}

/// Whether the token's `scope` claim (or `scp`, as some providers name it) grants
/// `scope`.
pub fn has_scope(claims: &Map<String, Value>, scope: &str) -> bool {
    contains(claims, "scope", scope) || contains(claims, "scp", scope)
}

/// A scalar claim as header text: strings as they are, numbers and booleans in JSON
/// form, arrays of those joined with `,`. Objects and nulls give nothing.
pub(super) fn header_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => {
            let mut out = String::new();
            for item in items {
                let text = match item {
                    Value::Array(_) | Value::Object(_) | Value::Null => return None,
                    other => header_text(other)?,
                };
                if !out.is_empty() {
                    out.push(',');
                }
                out.push_str(&text);
            }
            Some(out)
        }
        Value::Object(_) | Value::Null => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn dotted_paths_reach_nested_claims_and_exact_names_win() {
        let c = map(json!({"a": {"b": {"c": 3}}, "x.y": "literal", "x": {"y": "nested"}}));
        assert_eq!(claim(&c, "a.b.c"), Some(&json!(3)));
        assert_eq!(claim(&c, "a.b.d"), None);
        assert_eq!(claim(&c, "a.b.c.d"), None);
        assert_eq!(claim(&c, "x.y"), Some(&json!("literal")));
    }

    #[test]
    fn scope_is_a_word_of_a_string_or_an_item_of_an_array() {
        let c = map(json!({"scope": "read write:all", "groups": ["ops", "dev"], "scp": ["admin"]}));
        assert!(has_scope(&c, "read"));
        assert!(has_scope(&c, "write:all"));
        assert!(
            !has_scope(&c, "write"),
            "a prefix of a word is not the word"
        );
        assert!(has_scope(&c, "admin"), "scp counts as scope");
        assert!(contains(&c, "groups", "ops"));
        assert!(!contains(&c, "groups", "op"));
        assert!(!contains(&c, "missing", "x"));
    }

    #[test]
    fn header_text_takes_scalars_and_flat_arrays() {
        assert_eq!(header_text(&json!("s")).as_deref(), Some("s"));
        assert_eq!(header_text(&json!(42)).as_deref(), Some("42"));
        assert_eq!(header_text(&json!(true)).as_deref(), Some("true"));
        assert_eq!(header_text(&json!(["a", 1])).as_deref(), Some("a,1"));
        assert_eq!(header_text(&json!({"a": 1})), None);
        assert_eq!(header_text(&json!([{"a": 1}])), None);
    }
}
