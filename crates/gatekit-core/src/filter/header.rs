//! `RequestHeaderModifier` and `ResponseHeaderModifier` (Gateway API `HTTPHeaderFilter`).
//!
//! The spec: `set` overwrites a header with the given value (every existing value of that
//! name goes), `add` appends a value to any existing ones, `remove` deletes every value of
//! a name. Names are case-insensitive (RFC 9110 §5.1); a name appears at most once in each
//! of the three lists (the API's `listMapKey`), which is validated here, comparing names
//! case-insensitively.
//!
//! # Order
//!
//! The spec does not order the three lists against each other. gatekit applies **remove,
//! then set, then add**, as Envoy does (its header parser removes first "so that
//! remove-before-add is the default behaviour", then applies the header options, which
//! Gateway API implementations on Envoy emit as set before add). So a name both removed
//! and set ends up with the set value, and a name both set and added ends up with the set
//! value followed by the added one.
//!
//! # Cost
//!
//! Names and values are parsed into `HeaderName`/`HeaderValue` once, when the chain is
//! compiled. Per request each operation is one hash-map operation; cloning a compiled
//! name or value is a reference-count increment, not a copy.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::error::ConfigError;
use crate::route::HeaderModifier;

/// A compiled header modifier.
#[derive(Clone, Debug, Default)]
pub(super) struct HeaderOps {
    set: Box<[(HeaderName, HeaderValue)]>,
    add: Box<[(HeaderName, HeaderValue)]>,
    remove: Box<[HeaderName]>,
}

impl HeaderOps {
    /// Validates and compiles a modifier. Error fields are relative to the modifier
    /// (`set[1].name`).
    pub(super) fn compile(m: &HeaderModifier) -> Result<Self, ConfigError> {
        let set = compile_pairs(&m.set, "set")?;
        let add = compile_pairs(&m.add, "add")?;
        let mut remove: Vec<HeaderName> = Vec::with_capacity(m.remove.len());
        for (i, name) in m.remove.iter().enumerate() {
            let field = || format!("remove[{i}]");
            let name = parse_name(name).map_err(|r| ConfigError::new(field(), r))?;
            if remove.contains(&name) {
                return Err(ConfigError::new(
                    field(),
                    format!("header {name} is listed more than once"),
                ));
            }
            remove.push(name);
        }
        Ok(Self {
            set,
            add,
            remove: remove.into_boxed_slice(),
        })
    }

    /// Applies the modifier: remove, then set, then add.
    pub(super) fn apply(&self, headers: &mut HeaderMap) {
        for name in &*self.remove {
            headers.remove(name);
        }
        for (name, value) in &*self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &*self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

fn compile_pairs(
    pairs: &[(String, String)],
    list: &str,
) -> Result<Box<[(HeaderName, HeaderValue)]>, ConfigError> {
    let mut out: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(pairs.len());
    for (i, (name, value)) in pairs.iter().enumerate() {
        let name =
            parse_name(name).map_err(|r| ConfigError::new(format!("{list}[{i}].name"), r))?;
        if out.iter().any(|(n, _)| *n == name) {
            return Err(ConfigError::new(
                format!("{list}[{i}].name"),
                format!("header {name} is listed more than once"),
            ));
        }
        let value = HeaderValue::from_str(value).map_err(|_| {
            ConfigError::new(
                format!("{list}[{i}].value"),
                "is not a valid header value (control characters are not allowed)",
            )
        })?;
        out.push((name, value));
    }
    Ok(out.into_boxed_slice())
}

fn parse_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid header name"))
}
