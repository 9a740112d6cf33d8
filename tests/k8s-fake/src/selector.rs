//! Label and field selectors, parsed from their query-string form.
//!
//! Label grammar (as the apiserver's `labels.Parse`): comma-separated requirements, all of
//! which must hold: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (exists),
//! `!k` (does not exist). `!=` and `notin` also match objects without the label.
//!
//! Field selectors support `metadata.name` and `metadata.namespace` with `=`, `==` and `!=`
//! for every type, plus the few type-specific fields listed in [`FieldSelector::parse`];
//! anything else is a 400 "field label not supported", as on a real cluster.

use serde_json::Value;

/// A selector parse error (answered with 400 BadRequest).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct SelectorError(pub(crate) String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

/// A parsed label selector (empty = everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector {
    reqs: Vec<(String, Op)>,
}

fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_set(s: &str) -> Result<Vec<String>, SelectorError> {
    let s = s.trim();
    let inner = s
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| SelectorError(format!("expected a parenthesised set, found {s:?}")))?;
    let vals: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
    if let Some(v) = vals.iter().find(|v| !valid_value(v)) {
        return Err(SelectorError(format!("invalid label value: {v:?}")));
    }
    Ok(vals)
}

impl LabelSelector {
    /// Parses the `labelSelector` query value.
    pub(crate) fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self { reqs });
        }
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                return Err(SelectorError(format!("empty requirement in {s:?}")));
            }
            let (key, op) = if let Some(k) = part.strip_prefix('!') {
                (k.trim(), Op::NotExists)
            } else if let Some((k, v)) = part.split_once("!=") {
                (k.trim(), Op::NotEq(v.trim().to_owned()))
            } else if let Some((k, v)) = part.split_once("==") {
                (k.trim(), Op::Eq(v.trim().to_owned()))
            } else if let Some((k, v)) = part.split_once('=') {
                (k.trim(), Op::Eq(v.trim().to_owned()))
            } else if let Some((k, v)) = part.split_once(" notin ") {
                (k.trim(), Op::NotIn(parse_set(v)?))
            } else if let Some((k, v)) = part.split_once(" in ") {
                (k.trim(), Op::In(parse_set(v)?))
            } else {
                (part, Op::Exists)
            };
            if !valid_key(key) {
                return Err(SelectorError(format!("invalid label key {key:?}")));
            }
            if let Op::Eq(v) | Op::NotEq(v) = &op
                && !valid_value(v)
            {
                return Err(SelectorError(format!("invalid label value: {v:?}")));
            }
            reqs.push((key.to_owned(), op));
        }
        Ok(Self { reqs })
    }

    /// Whether the object's `metadata.labels` satisfy every requirement.
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.reqs.iter().all(|(k, op)| match op {
            Op::Eq(v) => get(k) == Some(v.as_str()),
            Op::NotEq(v) => get(k) != Some(v.as_str()),
            Op::In(vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Op::NotIn(vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Op::Exists => get(k).is_some(),
            Op::NotExists => get(k).is_none(),
        })
    }
}

/// A parsed field selector (empty = everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector {
    /// (JSON pointer, wanted value, equal?)
    reqs: Vec<(String, String, bool)>,
}

impl FieldSelector {
    /// Parses the `fieldSelector` query value for a resource of `kind`. Supported on every
    /// kind: `metadata.name`, `metadata.namespace`. Type-specific (as the apiserver):
    /// Secret `type`; Pod `spec.nodeName`, `status.phase`; Namespace `status.phase`.
    pub(crate) fn parse(s: &str, kind: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self { reqs });
        }
        for part in s.split(',') {
            let part = part.trim();
            let (field, value, eq) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, true)
            } else {
                return Err(SelectorError(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            let supported = matches!(field, "metadata.name" | "metadata.namespace")
                || matches!(
                    (kind, field),
                    ("Secret", "type")
                        | ("Pod", "spec.nodeName" | "status.phase")
                        | ("Namespace", "status.phase")
                );
            if !supported {
                return Err(SelectorError(format!("field label not supported: {field}")));
            }
            let pointer = format!("/{}", field.replace('.', "/"));
            reqs.push((pointer, value.trim().to_owned(), eq));
        }
        Ok(Self { reqs })
    }

    /// Whether the object satisfies every requirement (a missing field reads as `""`).
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|(ptr, want, eq)| {
            let got = obj.pointer(ptr).and_then(Value::as_str).unwrap_or("");
            (got == want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn label_grammar() {
        let o = obj(json!({"app": "web", "tier": "front"}));
        let yes = [
            "",
            "app=web",
            "app==web",
            "app!=db",
            "missing!=x",
            "app in (web,db)",
            "app notin (db)",
            "missing notin (db)",
            "app",
            "!missing",
            "app=web,tier=front",
            "app in (web, db),!missing",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(&o), "{s}");
        }
        let no = [
            "app=db",
            "app!=web",
            "app in (db)",
            "app notin (web)",
            "missing",
            "!app",
            "app=web,tier=back",
        ];
        for s in no {
            assert!(!LabelSelector::parse(s).unwrap().matches(&o), "{s}");
        }
        for bad in ["=x", "app=web,", "a b", "app in web", "app=a b"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_selectors() {
        let o = obj(json!({}));
        assert!(
            FieldSelector::parse("metadata.name=a", "Service")
                .unwrap()
                .matches(&o)
        );
        assert!(
            FieldSelector::parse("metadata.namespace==ns,metadata.name!=b", "Service")
                .unwrap()
                .matches(&o)
        );
        assert!(
            !FieldSelector::parse("metadata.name!=a", "Service")
                .unwrap()
                .matches(&o)
        );
        assert!(FieldSelector::parse("spec.foo=a", "Service").is_err());
        assert!(FieldSelector::parse("type=Opaque", "Secret").is_ok());
        assert!(FieldSelector::parse("nonsense", "Service").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,40}", kind in "[A-Za-z]{0,8}") {
            let obj = json!({"metadata": {"name": "a", "labels": {"a": "b"}}});
            if let Ok(sel) = LabelSelector::parse(&s) {
                let _ = sel.matches(&obj);
            }
            if let Ok(sel) = FieldSelector::parse(&s, &kind) {
                let _ = sel.matches(&obj);
            }
        }
    }
}
