//! HTTPRoutes as [`ResourceSet`](crate::ResourceSet) keeps them: the spec as parsed,
//! without the room the parsed object leaves unused.
//!
//! The file cache and the Kubernetes provider keep every HTTPRoute between reloads
//! (one per route in the shape users have). As `gateway-api` objects they cost 464
//! bytes inline, 360 of them an `ObjectMeta` of fifteen optional fields nearly all
//! `None`, and then a rule 288 bytes, a backendRef 136, a parentRef 128 and a match
//! 88, mostly optional fields that are rarely set. [`CompactHttpRoute`] keeps:
//!
//! - of the metadata what translation and status read ([`CompactMeta`]): namespace and
//!   name (one allocation), and, boxed together because files rarely set them, the
//!   `resourceVersion`, `generation`, `creationTimestamp` and labels (route selectors
//!   of policies);
//! - the spec with the same field names as the `gateway-api` type, so that code that
//!   reads any route kind's fields alike reads it too, in one allocation (the route
//!   itself is a few words): lists are [`SmallList`]s, which keep one item inline (a
//!   route nearly always has one hostname, parentRef and rule, a rule one match and
//!   one backendRef: no allocation for any of them) and more as exact boxed slices,
//!   strings boxed `str`s, and a rule's rare parts (`retry`, `sessionPersistence`,
//!   `timeouts`) and the filters and header and query matches stay the parsed types,
//!   boxed.
//!
//! It is built from the parsed and checked object ([`From`]), so load errors still
//! name the document's fields. `status` is not kept (translation writes it). Two
//! routes that differ only in metadata not kept (annotations, uid, ...) are equal, so
//! such a change is no change to translate.

use std::collections::BTreeMap;

use gateway_api::experimental::httproutes as h;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{HttpRoute, Object, SmallList, name_hash};

fn boxed(value: Option<&String>) -> Option<Box<str>> {
    value.map(|v| v.as_str().into())
}

/// `list`'s items converted: one inline, more exactly sized (`None` stays `None`).
fn slice<T, U>(list: Option<&Vec<T>>, f: impl FnMut(&T) -> U) -> Option<SmallList<U>> {
    list.map(|l| l.iter().map(f).collect())
}

/// `list` exactly sized (`None` stays `None`).
fn exact<T: Clone>(list: Option<&Vec<T>>) -> Option<Box<[T]>> {
    list.map(|l| l.as_slice().into())
}

// === impl CompactMeta ===

/// What translation and status read of a kept route's metadata: namespace, name,
/// `resourceVersion`, `generation`, `creationTimestamp` and labels.
#[derive(Clone, Debug, PartialEq)]
pub struct CompactMeta {
    /// The namespace followed by the name, in one allocation.
    names: Box<str>,
    /// Where the name starts in `names`; `u32::MAX`: no namespace (all of it the name).
    split: u32,
    /// [`name_hash`] of the namespace (`default` when unset) and name: a scan for
    /// names compares it first, without reading `names` (it fills what was padding).
    hash: u32,
    /// The parts files rarely set.
    rare: Option<Box<MetaRare>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct MetaRare {
    resource_version: Option<Box<str>>,
    generation: Option<i64>,
    creation_timestamp: Option<Time>,
    labels: Option<BTreeMap<String, String>>,
}

impl Default for CompactMeta {
    fn default() -> Self {
        Self::from(&crate::types::ObjectMeta::default())
    }
}

impl CompactMeta {
    /// [`name_hash`] of the namespace (`default` when unset) and the name.
    pub fn name_hash(&self) -> u32 {
        self.hash
    }

    /// Where the name starts in `names`, if there is a namespace before it.
    fn split(&self) -> Option<usize> {
        (self.split != u32::MAX)
            .then(|| usize::try_from(self.split).ok())
            .flatten()
    }

    /// `metadata.namespace`.
    pub fn namespace(&self) -> Option<&str> {
        self.names.get(..self.split()?)
    }

    /// `metadata.name` (empty when missing).
    pub fn name(&self) -> &str {
        match self.split() {
            Some(at) => self.names.get(at..).unwrap_or_default(),
            None => &self.names,
        }
    }

    /// `metadata.resourceVersion`.
    pub fn resource_version(&self) -> Option<&str> {
        self.rare.as_ref()?.resource_version.as_deref()
    }

    /// `metadata.generation`.
    pub fn generation(&self) -> Option<i64> {
        self.rare.as_ref()?.generation
    }

    /// `metadata.creationTimestamp`.
    pub fn creation_timestamp(&self) -> Option<&Time> {
        self.rare.as_ref()?.creation_timestamp.as_ref()
    }

    /// `metadata.labels`.
    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.rare.as_ref()?.labels.as_ref()
    }
}

impl From<&crate::types::ObjectMeta> for CompactMeta {
    fn from(meta: &crate::types::ObjectMeta) -> Self {
        let name = meta.name.as_deref().unwrap_or_default();
        let (names, split) = match meta.namespace.as_deref() {
            // A namespace is at most 63 bytes; a longer one is kept whole anyway.
            Some(ns) => match u32::try_from(ns.len()) {
                Ok(at) if at != u32::MAX => (format!("{ns}{name}").into_boxed_str(), at),
                _ => (name.into(), u32::MAX),
            },
            None => (name.into(), u32::MAX),
        };
        let rare = MetaRare {
            resource_version: boxed(meta.resource_version.as_ref()),
            generation: meta.generation,
            creation_timestamp: meta.creation_timestamp.clone(),
            labels: meta.labels.clone().filter(|l| !l.is_empty()),
        };
        Self {
            names,
            split,
            hash: name_hash(meta.namespace.as_deref().unwrap_or("default"), name),
            rare: (rare != MetaRare::default()).then(|| Box::new(rare)),
        }
    }
}

// === impl CompactHttpRoute ===

/// A `gateway.networking.k8s.io` HTTPRoute as a [`ResourceSet`](crate::ResourceSet)
/// keeps it (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CompactHttpRoute {
    /// What is read of `metadata`.
    pub metadata: CompactMeta,
    /// `spec`, in one allocation with its first hostname, parentRef and rule.
    pub spec: Box<CompactHttpRouteSpec>,
}

/// An HTTPRoute's `spec` (the fields of `gateway-api`'s `HttpRouteSpec`).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct CompactHttpRouteSpec {
    /// `hostnames`.
    pub hostnames: Option<SmallList<String>>,
    /// `parentRefs`.
    pub parent_refs: Option<SmallList<RouteParentRef>>,
    /// `rules`.
    pub rules: Option<SmallList<RouteRule>>,
    /// `useDefaultGateways`.
    pub use_default_gateways: Option<h::HttpRouteUseDefaultGateways>,
}

/// A `parentRefs` item.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RouteParentRef {
    /// `group`.
    pub group: Option<Box<str>>,
    /// `kind`.
    pub kind: Option<Box<str>>,
    /// `name`.
    pub name: Box<str>,
    /// `namespace`.
    pub namespace: Option<Box<str>>,
    /// `port`.
    pub port: Option<i32>,
    /// `sectionName`.
    pub section_name: Option<Box<str>>,
}

/// A `rules` item.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RouteRule {
    /// `backendRefs`.
    pub backend_refs: Option<SmallList<RouteBackendRef>>,
    /// `filters`, as parsed.
    pub filters: Option<Box<[h::HttpRouteRulesFilters]>>,
    /// `matches`.
    pub matches: Option<SmallList<RouteMatch>>,
    /// `name`.
    pub name: Option<Box<str>>,
    /// `retry`, as parsed.
    pub retry: Option<Box<h::HttpRouteRulesRetry>>,
    /// `sessionPersistence`, as parsed.
    pub session_persistence: Option<Box<h::HttpRouteRulesSessionPersistence>>,
    /// `timeouts`, as parsed.
    pub timeouts: Option<Box<h::HttpRouteRulesTimeouts>>,
}

/// A rule's `matches` item.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct RouteMatch {
    /// `headers`, as parsed.
    pub headers: Option<Box<[h::HttpRouteRulesMatchesHeaders]>>,
    /// `method`.
    pub method: Option<h::HttpRouteRulesMatchesMethod>,
    /// `path`.
    pub path: Option<RoutePath>,
    /// `queryParams`, as parsed.
    pub query_params: Option<Box<[h::HttpRouteRulesMatchesQueryParams]>>,
}

/// A match's `path`.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct RoutePath {
    /// `type`.
    pub r#type: Option<h::HttpRouteRulesMatchesPathType>,
    /// `value`.
    pub value: Option<Box<str>>,
}

/// A rule's `backendRefs` item.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RouteBackendRef {
    /// `filters`, as parsed.
    pub filters: Option<Box<[h::HttpRouteRulesBackendRefsFilters]>>,
    /// `group`.
    pub group: Option<Box<str>>,
    /// `kind`.
    pub kind: Option<Box<str>>,
    /// `name`.
    pub name: Box<str>,
    /// `namespace`.
    pub namespace: Option<Box<str>>,
    /// `port`.
    pub port: Option<i32>,
    /// `weight`.
    pub weight: Option<i32>,
}

impl Object for CompactHttpRoute {
    fn namespace(&self) -> Option<&str> {
        self.metadata.namespace()
    }

    fn name(&self) -> &str {
        self.metadata.name()
    }

    fn resource_version(&self) -> Option<&str> {
        self.metadata.resource_version()
    }

    fn name_hash(&self) -> Option<u32> {
        Some(self.metadata.name_hash())
    }
}

impl From<&HttpRoute> for CompactHttpRoute {
    fn from(route: &HttpRoute) -> Self {
        let spec = &route.spec;
        Self {
            metadata: CompactMeta::from(&route.metadata),
            spec: Box::new(CompactHttpRouteSpec {
                hostnames: slice(spec.hostnames.as_ref(), |h| h.as_str().to_owned()),
                parent_refs: slice(spec.parent_refs.as_ref(), |p| RouteParentRef {
                    group: boxed(p.group.as_ref()),
                    kind: boxed(p.kind.as_ref()),
                    name: p.name.as_str().into(),
                    namespace: boxed(p.namespace.as_ref()),
                    port: p.port,
                    section_name: boxed(p.section_name.as_ref()),
                }),
                rules: slice(spec.rules.as_ref(), |r| r.into()),
                use_default_gateways: spec.use_default_gateways.clone(),
            }),
        }
    }
}

impl From<HttpRoute> for CompactHttpRoute {
    fn from(route: HttpRoute) -> Self {
        Self::from(&route)
    }
}

impl From<&h::HttpRouteRules> for RouteRule {
    fn from(r: &h::HttpRouteRules) -> Self {
        Self {
            backend_refs: slice(r.backend_refs.as_ref(), |b| RouteBackendRef {
                filters: exact(b.filters.as_ref()),
                group: boxed(b.group.as_ref()),
                kind: boxed(b.kind.as_ref()),
                name: b.name.as_str().into(),
                namespace: boxed(b.namespace.as_ref()),
                port: b.port,
                weight: b.weight,
            }),
            filters: exact(r.filters.as_ref()),
            matches: slice(r.matches.as_ref(), |m| RouteMatch {
                headers: exact(m.headers.as_ref()),
                method: m.method.clone(),
                path: m.path.as_ref().map(|p| RoutePath {
                    r#type: p.r#type.clone(),
                    value: boxed(p.value.as_ref()),
                }),
                query_params: exact(m.query_params.as_ref()),
            }),
            name: boxed(r.name.as_ref()),
            retry: r.retry.clone().map(Box::new),
            session_persistence: r.session_persistence.clone().map(Box::new),
            timeouts: r.timeouts.clone().map(Box::new),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web
  namespace: apps
  resourceVersion: "7"
  generation: 3
  creationTimestamp: "2026-01-02T03:04:05Z"
  labels: { team: a }
  annotations: { note: x }
  uid: 0000-1111
spec:
  parentRefs: [{ name: gw, sectionName: http, port: 80 }, { group: gateway.networking.k8s.io, kind: ListenerSet, name: ls, namespace: infra }]
  hostnames: [a.example.com, b.example.com]
  rules:
  - name: first
    matches:
    - path: { type: PathPrefix, value: /api }
      method: GET
      headers: [{ name: x-a, value: "1" }]
      queryParams: [{ name: q, value: v }]
    filters: [{ type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: x-b, value: "2" }] } }]
    backendRefs:
    - { name: api, port: 8080, weight: 3, namespace: other, filters: [{ type: RequestHeaderModifier, requestHeaderModifier: { remove: [x-c] } }] }
    timeouts: { request: 5s }
    retry: { attempts: 2 }
  - backendRefs: [{ name: web, port: 80 }]
status:
  parents: []
"#;

    fn parsed(yaml: &str) -> HttpRoute {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn a_route_keeps_its_spec_and_what_is_read_of_its_metadata() {
        let r = parsed(ROUTE);
        let c = CompactHttpRoute::from(&r);
        let m = &c.metadata;
        assert_eq!((m.namespace(), m.name()), (Some("apps"), "web"));
        assert_eq!((m.resource_version(), m.generation()), (Some("7"), Some(3)));
        assert_eq!(
            m.creation_timestamp(),
            r.metadata.creation_timestamp.as_ref()
        );
        assert_eq!(m.labels(), r.metadata.labels.as_ref());
        assert_eq!((c.namespace(), c.name()), (Some("apps"), "web"));

        // The spec, field for field: serialized back through the parsed type's shape.
        let spec = &c.spec;
        assert_eq!(spec.hostnames.as_deref(), r.spec.hostnames.as_deref());
        let parents = spec.parent_refs.as_deref().unwrap();
        let [first, second] = parents else {
            panic!("two parentRefs: {parents:?}");
        };
        assert_eq!(
            (&*first.name, first.section_name.as_deref(), first.port),
            ("gw", Some("http"), Some(80))
        );
        assert_eq!(
            (
                second.group.as_deref(),
                second.kind.as_deref(),
                second.namespace.as_deref()
            ),
            (
                Some("gateway.networking.k8s.io"),
                Some("ListenerSet"),
                Some("infra")
            )
        );
        let rules = spec.rules.as_deref().unwrap();
        let parsed_rules = r.spec.rules.as_deref().unwrap();
        assert_eq!(rules.len(), 2);
        let (rule, parsed_rule) = (&rules[0], &parsed_rules[0]);
        assert_eq!(rule.name.as_deref(), Some("first"));
        assert_eq!(rule.filters.as_deref(), parsed_rule.filters.as_deref());
        assert_eq!(rule.timeouts.as_deref(), parsed_rule.timeouts.as_ref());
        assert_eq!(rule.retry.as_deref(), parsed_rule.retry.as_ref());
        assert_eq!(rule.session_persistence, None);
        let m = &rule.matches.as_deref().unwrap()[0];
        let pm = &parsed_rule.matches.as_deref().unwrap()[0];
        let path = m.path.as_ref().unwrap();
        assert_eq!(
            (path.r#type.as_ref(), path.value.as_deref()),
            (pm.path.as_ref().unwrap().r#type.as_ref(), Some("/api"))
        );
        assert_eq!(m.method, pm.method);
        assert_eq!(m.headers.as_deref(), pm.headers.as_deref());
        assert_eq!(m.query_params.as_deref(), pm.query_params.as_deref());
        let b = &rule.backend_refs.as_deref().unwrap()[0];
        let pb = &parsed_rule.backend_refs.as_deref().unwrap()[0];
        assert_eq!(
            (&*b.name, b.namespace.as_deref(), b.port, b.weight),
            ("api", Some("other"), Some(8080), Some(3))
        );
        assert_eq!(b.filters.as_deref(), pb.filters.as_deref());
        assert_eq!(rules[1].matches, None);
    }

    #[test]
    fn metadata_not_read_is_no_difference() {
        let c = CompactHttpRoute::from(&parsed(ROUTE));
        let unread = ROUTE
            .replace("note: x", "note: y")
            .replace("uid: 0000-1111", "uid: 2222");
        assert_eq!(c, CompactHttpRoute::from(&parsed(&unread)));
        for read in [
            ROUTE.replace("team: a", "team: b"),
            ROUTE.replace("generation: 3", "generation: 4"),
            ROUTE.replace("/api", "/app"),
        ] {
            assert_ne!(c, CompactHttpRoute::from(&parsed(&read)));
        }
    }

    #[test]
    fn a_route_without_namespace_or_rare_metadata() {
        let c = CompactHttpRoute::from(&parsed(
            "metadata: { name: r }\nspec: { rules: [{ backendRefs: [{ name: s }] }] }\n",
        ));
        assert_eq!((c.metadata.namespace(), c.metadata.name()), (None, "r"));
        assert_eq!(c.metadata.generation(), None);
        assert_eq!(c.metadata.labels(), None);
        assert_eq!(c.spec.parent_refs, None);
        assert_eq!(c.spec.hostnames, None);
    }

    #[test]
    fn the_kept_forms_are_small() {
        // What the lists move per route when a file's chunk is spliced in before it
        // (the `gateway-api` HTTPRoute: 464 bytes; a rule 288, a backendRef 136, a
        // parentRef 128, a match 88): the metadata and a pointer.
        let word = std::mem::size_of::<usize>();
        assert!(std::mem::size_of::<CompactHttpRoute>() <= 5 * word);
        // The one allocation of a route of one rule, match, backendRef and parentRef
        // (four blocks of 88, 96, 64 and 88 bytes and one of the hostname before).
        assert!(std::mem::size_of::<CompactHttpRouteSpec>() <= 42 * word);
        assert!(std::mem::size_of::<RouteRule>() <= 27 * word);
        assert!(std::mem::size_of::<RouteBackendRef>() <= 12 * word);
        assert!(std::mem::size_of::<RouteParentRef>() <= 11 * word);
        assert!(std::mem::size_of::<RouteMatch>() <= 8 * word);
        // The lists' discriminant fits in a niche of their items.
        assert_eq!(
            std::mem::size_of::<Option<SmallList<RouteBackendRef>>>(),
            std::mem::size_of::<RouteBackendRef>()
        );
    }

    #[test]
    fn a_route_of_one_of_each_keeps_them_inline() {
        let c = CompactHttpRoute::from(&parsed(
            "metadata: { name: r, namespace: a }
spec:
  hostnames: [a.example.com]
  parentRefs: [{ name: gw }]
  rules: [{ matches: [{ path: { value: /a } }], backendRefs: [{ name: s, port: 80 }] }]
",
        ));
        let spec = &c.spec;
        assert!(matches!(spec.hostnames, Some(SmallList::One(ref h)) if h == "a.example.com"));
        assert!(matches!(spec.parent_refs, Some(SmallList::One(ref p)) if &*p.name == "gw"));
        let Some(SmallList::One(rule)) = &spec.rules else {
            panic!("one rule, inline: {:?}", spec.rules);
        };
        assert!(matches!(rule.matches, Some(SmallList::One(_))));
        assert!(matches!(rule.backend_refs, Some(SmallList::One(ref b)) if b.port == Some(80)));
        // Two rules are a boxed slice, read the same way.
        let two = CompactHttpRoute::from(&parsed(
            "metadata: { name: r }
spec: { rules: [{ name: x }, { name: y }] }
",
        ));
        let names: Vec<_> = (two.spec.rules.iter().flatten())
            .map(|r| r.name.as_deref())
            .collect();
        assert_eq!(names, [Some("x"), Some("y")]);
    }
}
