//! `/config` rendering: the served snapshot as JSON text.
//!
//! Rendered once per reload straight from the translation with borrowed `Serialize`
//! views (no intermediate `serde_json::Value`: for 5,000 routes a `Value` tree costs tens
//! of megabytes and tens of milliseconds; the text is 2.7 MB and takes a few).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;

use bytes::Bytes;

use gatekit_core::ConfigError;
use gatekit_core::route::{Match, PathMatch, Route, StringMatch};
use gatekit_k8s::status::{Condition, ResourceStatus};
use gatekit_k8s::translate::Protocol;
use gatekit_k8s::{ManifestError, Translation};
use serde::Serialize;

/// The parts of `/config` that change only on reload, as JSON text: `listeners`,
/// `resources` and `errors` are ranges of one buffer, `text`.
///
/// After a render, `text` holds just these three parts; once they are published,
/// [`Rendered::published`] points it into the published document instead (the same
/// bytes, shared), so the process holds the 2.7 MB of a 5,000-route snapshot once, not
/// twice.
pub(crate) struct Rendered {
    /// The generation of the rendered snapshot.
    pub(crate) generation: u64,
    text: Bytes,
    listeners: Range<usize>,
    resources: Range<usize>,
    errors: Range<usize>,
}

impl Default for Rendered {
    fn default() -> Self {
        Self {
            generation: 0,
            text: Bytes::from_static(b"[][][]"),
            listeners: 0..2,
            resources: 2..4,
            errors: 4..6,
        }
    }
}

impl Rendered {
    fn part(&self, range: &Range<usize>) -> &str {
        // The ranges are those of JSON text written by `document`/`render` (valid UTF-8,
        // on character boundaries); `[]` if they are ever not.
        self.text
            .get(range.clone())
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("[]")
    }

    /// The whole `/config` document, with `(name, JSON text)` fields spliced in where
    /// `None` stands for this snapshot's parts (`listeners`, `resources`, `errors`, in
    /// this order). Returns the document and the ranges of the three parts in it.
    pub(crate) fn document(&self, fields: &[(&str, Option<&str>)]) -> (String, [Range<usize>; 3]) {
        let parts = [
            ("listeners", self.part(&self.listeners)),
            ("resources", self.part(&self.resources)),
            ("errors", self.part(&self.errors)),
        ];
        let len = self.text.len()
            + fields
                .iter()
                .map(|(n, v)| n.len() + v.map_or(0, str::len) + 4)
                .sum::<usize>()
            + 32;
        let mut out = String::with_capacity(len);
        let mut ranges = [0..0, 0..0, 0..0];
        let mut next = 0;
        out.push('{');
        for (i, (name, value)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('"');
            out.push_str(name);
            out.push_str("\":");
            match value {
                Some(value) => out.push_str(value),
                None => {
                    let (_, part) = parts[next.min(2)];
                    let start = out.len();
                    out.push_str(part);
                    ranges[next.min(2)] = start..out.len();
                    next += 1;
                }
            }
        }
        out.push('}');
        (out, ranges)
    }

    /// Points the parts into `published`, the document [`Rendered::document`] made
    /// (with `ranges`) and `/config` now serves, dropping this render's own copy.
    /// Nothing changes if `published` is not that document.
    pub(crate) fn published(
        &mut self,
        published: Bytes,
        ptr: *const u8,
        ranges: [Range<usize>; 3],
    ) {
        if published.as_ptr() != ptr {
            return;
        }
        let [listeners, resources, errors] = ranges;
        self.text = published;
        self.listeners = listeners;
        self.resources = resources;
        self.errors = errors;
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    // Serializing these plain structs cannot fail (string keys, no maps with other keys).
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// Renders the listeners (with their routes), resource conditions and problems.
pub(crate) fn render(
    generation: u64,
    translation: &Translation,
    bound: &BTreeMap<u16, SocketAddr>,
    errors: &[ConfigError],
) -> Rendered {
    let ports: Vec<PortJson<'_>> = translation
        .listeners()
        .iter()
        .map(|port| PortJson {
            port: port.port(),
            address: bound.get(&port.port()).map(ToString::to_string),
            protocol: match port.protocol() {
                Protocol::Https => "HTTPS",
                _ => "HTTP",
            },
            listeners: port
                .listeners()
                .iter()
                .map(|l| ListenerJson {
                    gateway: l.gateway().to_string(),
                    name: l.name(),
                    hostname: l.hostname(),
                    certificates: l
                        .certificates()
                        .iter()
                        .map(|c| c.secret().to_string())
                        .collect(),
                })
                .collect(),
            routes: port.routes().iter().map(RouteJson::new).collect(),
        })
        .collect();
    let statuses: Vec<StatusJson<'_>> =
        translation.statuses().iter().map(StatusJson::new).collect();
    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    // One buffer for the three parts.
    let mut text = Vec::new();
    let mut part = |value: &dyn erased::Json| {
        let start = text.len();
        if value.write(&mut text).is_err() {
            text.truncate(start);
            text.extend_from_slice(b"null");
        }
        start..text.len()
    };
    let listeners = part(&ports);
    let resources = part(&statuses);
    let errors = part(&errors);
    Rendered {
        generation,
        text: Bytes::from(text),
        listeners,
        resources,
        errors,
    }
}

mod erased {
    /// A value serializable to JSON, object-safe.
    pub(super) trait Json {
        fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()>;
    }

    impl<T: serde::Serialize> Json for T {
        fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
            serde_json::to_writer(out, self)
        }
    }
}

/// `lastReloadError` for refused manifests.
pub(crate) fn refused(errors: &[ManifestError]) -> String {
    #[derive(Serialize)]
    struct ErrorJson<'a> {
        file: &'a str,
        document: Option<usize>,
        kind: Option<&'a str>,
        namespace: Option<&'a str>,
        name: Option<&'a str>,
        field: Option<&'a str>,
        reason: &'a str,
        message: String,
    }
    #[derive(Serialize)]
    struct Refused<'a> {
        message: &'static str,
        errors: Vec<ErrorJson<'a>>,
    }
    to_json(&Refused {
        message: "manifests refused; the last good configuration keeps serving",
        errors: errors
            .iter()
            .map(|e| ErrorJson {
                file: e.file(),
                document: e.document(),
                kind: e.kind(),
                namespace: e.namespace(),
                name: e.name(),
                field: e.field(),
                reason: e.reason(),
                message: e.to_string(),
            })
            .collect(),
    })
}

#[derive(Serialize)]
struct PortJson<'a> {
    port: u16,
    address: Option<String>,
    protocol: &'static str,
    listeners: Vec<ListenerJson<'a>>,
    routes: Vec<RouteJson<'a>>,
}

#[derive(Serialize)]
struct ListenerJson<'a> {
    gateway: String,
    name: &'a str,
    hostname: Option<&'a str>,
    certificates: Vec<String>,
}

#[derive(Serialize)]
struct RouteJson<'a> {
    route: String,
    hostnames: &'a [String],
    rules: Vec<RuleJson<'a>>,
}

impl<'a> RouteJson<'a> {
    fn new(route: &'a Route) -> Self {
        Self {
            route: route.id.to_string(),
            hostnames: &route.hostnames,
            rules: route
                .rules
                .iter()
                .map(|rule| RuleJson {
                    name: rule.name.as_deref(),
                    matches: rule.matches.iter().map(MatchJson::new).collect(),
                    backends: rule
                        .backends
                        .iter()
                        .map(|b| BackendJson {
                            name: &b.name,
                            weight: b.weight,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct RuleJson<'a> {
    name: Option<&'a str>,
    matches: Vec<MatchJson<'a>>,
    backends: Vec<BackendJson<'a>>,
}

#[derive(Serialize)]
struct BackendJson<'a> {
    name: &'a str,
    weight: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MatchJson<'a> {
    path: Option<ValueJson<'a>>,
    headers: Vec<ValueJson<'a>>,
    query_params: Vec<ValueJson<'a>>,
    method: Option<&'a str>,
}

#[derive(Serialize)]
struct ValueJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(rename = "type")]
    type_: &'static str,
    value: &'a str,
}

impl<'a> ValueJson<'a> {
    fn string(name: &'a str, m: &'a StringMatch) -> Self {
        let (type_, value) = match m {
            StringMatch::Exact(v) => ("Exact", v),
            StringMatch::Regex(v) => ("RegularExpression", v),
        };
        Self {
            name: Some(name),
            type_,
            value,
        }
    }
}

impl<'a> MatchJson<'a> {
    fn new(m: &'a Match) -> Self {
        Self {
            path: m.path.as_ref().map(|p| {
                let (type_, value) = match p {
                    PathMatch::Exact(v) => ("Exact", v),
                    PathMatch::Prefix(v) => ("PathPrefix", v),
                    PathMatch::Regex(v) => ("RegularExpression", v),
                };
                ValueJson {
                    name: None,
                    type_,
                    value,
                }
            }),
            headers: m
                .headers
                .iter()
                .map(|h| ValueJson::string(&h.name, &h.value))
                .collect(),
            query_params: m
                .query
                .iter()
                .map(|q| ValueJson::string(&q.name, &q.value))
                .collect(),
            method: m.method.as_ref().map(http::Method::as_str),
        }
    }
}

#[derive(Serialize)]
struct ConditionJson<'a> {
    #[serde(rename = "type")]
    type_: &'a str,
    status: &'static str,
    reason: &'a str,
    message: &'a str,
}

fn conditions(conditions: &[Condition]) -> Vec<ConditionJson<'_>> {
    conditions
        .iter()
        .map(|c| ConditionJson {
            type_: c.type_(),
            status: c.status().as_str(),
            reason: c.reason(),
            message: c.message(),
        })
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ParentJson<'a> {
    gateway: String,
    section_name: Option<&'a str>,
    port: Option<u16>,
    conditions: Vec<ConditionJson<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListenerStatusJson<'a> {
    name: &'a str,
    attached_routes: u32,
    conditions: Vec<ConditionJson<'a>>,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    kind: &'a str,
    namespace: Option<&'a str>,
    name: &'a str,
    conditions: Vec<ConditionJson<'a>>,
    parents: Vec<ParentJson<'a>>,
    listeners: Vec<ListenerStatusJson<'a>>,
}

impl<'a> StatusJson<'a> {
    fn new(status: &'a ResourceStatus) -> Self {
        let r = status.resource();
        Self {
            kind: r.kind(),
            namespace: r.namespace(),
            name: r.name(),
            conditions: conditions(status.conditions()),
            parents: status
                .parents()
                .iter()
                .map(|p| ParentJson {
                    gateway: format!("{}/{}", p.parent().namespace, p.parent().name),
                    section_name: p.parent().section_name.as_deref(),
                    port: p.parent().port,
                    conditions: conditions(p.conditions()),
                })
                .collect(),
            listeners: status
                .listeners()
                .iter()
                .map(|l| ListenerStatusJson {
                    name: l.name(),
                    attached_routes: l.attached_routes(),
                    conditions: conditions(l.conditions()),
                })
                .collect(),
        }
    }
}
