//! The resource registry: which `(group, version, plural)` triples the fake serves, and how a
//! request path maps onto one of them.
//!
//! Each served resource has a *storage* index: aliases (the `v1beta1` ReferenceGrant next to
//! the `v1` one) share the storage of their canonical version, so an object written through
//! one version is listed and watched through the other, as the real apiserver does for
//! convertible versions. Objects are stored without `apiVersion`/`kind`; responses stamp the
//! requested version's pair on the way out.
//!
//! Discovery (`/api`, `/apis`, `/apis/{group}`, `/api/v1`, `/apis/{group}/{version}`) is
//! answered from the same table in the legacy (non-aggregated) format.

use serde_json::{Value, json};

/// One resource type the fake serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group (`""` for the core group).
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// Plural lower-case name used in paths, e.g. `endpointslices`.
    pub plural: String,
    /// Kind, e.g. `EndpointSlice`.
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Whether the type has a `/status` subresource (writes to the main resource then
    /// ignore `.status`, writes to `/status` change only `.status`).
    pub has_status: bool,
}

impl ResourceType {
    /// A resource type; `group` is `""` for the core group.
    pub fn new(
        group: impl Into<String>,
        version: impl Into<String>,
        plural: impl Into<String>,
        kind: impl Into<String>,
        namespaced: bool,
        has_status: bool,
    ) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            kind: kind.into(),
            namespaced,
            has_status,
        }
    }

    /// `apiVersion` as written in objects: `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of a list of this type (`<Kind>List`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

/// A registered resource: its type and the index of the storage it shares.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) ty: ResourceType,
    pub(crate) storage: usize,
}

/// The set of served resource types.
#[derive(Debug, Clone)]
pub(crate) struct Registry {
    entries: Vec<Entry>,
}

impl Registry {
    /// The preloaded registry of the spec (§8).
    pub(crate) fn preloaded() -> Self {
        let mut r = Self {
            entries: Vec::new(),
        };
        let gw = "gateway.networking.k8s.io";
        for ty in [
            ResourceType::new("", "v1", "namespaces", "Namespace", false, true),
            ResourceType::new("", "v1", "services", "Service", true, true),
            ResourceType::new("", "v1", "pods", "Pod", true, true),
            ResourceType::new("", "v1", "secrets", "Secret", true, false),
            ResourceType::new("", "v1", "configmaps", "ConfigMap", true, false),
            ResourceType::new(
                "discovery.k8s.io",
                "v1",
                "endpointslices",
                "EndpointSlice",
                true,
                false,
            ),
            ResourceType::new("coordination.k8s.io", "v1", "leases", "Lease", true, false),
            ResourceType::new(gw, "v1", "gatewayclasses", "GatewayClass", false, true),
            ResourceType::new(gw, "v1", "gateways", "Gateway", true, true),
            ResourceType::new(gw, "v1", "listenersets", "ListenerSet", true, true),
            ResourceType::new(gw, "v1", "httproutes", "HTTPRoute", true, true),
            ResourceType::new(gw, "v1", "grpcroutes", "GRPCRoute", true, true),
            ResourceType::new(gw, "v1", "referencegrants", "ReferenceGrant", true, false),
            ResourceType::new(
                "gatekit.io",
                "v1alpha1",
                "backendpolicies",
                "BackendPolicy",
                true,
                true,
            ),
            ResourceType::new(
                "gatekit.io",
                "v1alpha1",
                "trafficpolicies",
                "TrafficPolicy",
                true,
                true,
            ),
            ResourceType::new(
                "gateway.envoyproxy.io",
                "v1alpha1",
                "backendtrafficpolicies",
                "BackendTrafficPolicy",
                true,
                true,
            ),
            ResourceType::new(
                "gateway.networking.x-k8s.io",
                "v1alpha1",
                "xbackendtrafficpolicies",
                "XBackendTrafficPolicy",
                true,
                true,
            ),
            ResourceType::new(
                "gateway.envoyproxy.io",
                "v1alpha1",
                "clienttrafficpolicies",
                "ClientTrafficPolicy",
                true,
                true,
            ),
            ResourceType::new(
                "gateway.envoyproxy.io",
                "v1alpha1",
                "securitypolicies",
                "SecurityPolicy",
                true,
                true,
            ),
            ResourceType::new(
                "gatekit.io",
                "v1alpha1",
                "securityoverrides",
                "SecurityOverride",
                true,
                true,
            ),
        ] {
            r.register(ty);
        }
        r.register_alias(
            ResourceType::new(
                gw,
                "v1beta1",
                "referencegrants",
                "ReferenceGrant",
                true,
                false,
            ),
            gw,
            "referencegrants",
        );
        r
    }

    /// Adds a type with its own storage (replaces nothing; a duplicate triple is ignored).
    pub(crate) fn register(&mut self, ty: ResourceType) -> usize {
        if let Some(i) = self.find(&ty.group, &ty.version, &ty.plural) {
            return i;
        }
        let storage = self
            .entries
            .iter()
            .find(|e| e.ty.group == ty.group && e.ty.plural == ty.plural)
            .map_or(self.entries.len(), |e| e.storage);
        self.entries.push(Entry { ty, storage });
        self.entries.len() - 1
    }

    fn register_alias(&mut self, ty: ResourceType, group: &str, plural: &str) {
        let storage = self
            .entries
            .iter()
            .find(|e| e.ty.group == group && e.ty.plural == plural)
            .map_or(self.entries.len(), |e| e.storage);
        self.entries.push(Entry { ty, storage });
    }

    pub(crate) fn find(&self, group: &str, version: &str, plural: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.ty.group == group && e.ty.version == version && e.ty.plural == plural)
    }

    /// The first registered type with this `apiVersion` and kind.
    pub(crate) fn find_kind(&self, api_version: &str, kind: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.ty.api_version() == api_version && e.ty.kind == kind)
    }

    pub(crate) fn get(&self, idx: usize) -> &Entry {
        &self.entries[idx]
    }

    /// The type that owns a storage (the first registered with it).
    pub(crate) fn canonical(&self, storage: usize) -> &ResourceType {
        self.entries
            .iter()
            .find(|e| e.storage == storage)
            .map_or(&self.entries[storage].ty, |e| &e.ty)
    }
}

// === discovery ===

impl Registry {
    /// `GET /api`: the core versions.
    pub(crate) fn core_versions(&self, server_address: &str) -> Value {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        })
    }

    fn group_entry(&self, group: &str) -> Value {
        let mut versions: Vec<&str> = Vec::new();
        for e in self.entries.iter().filter(|e| e.ty.group == group) {
            if !versions.contains(&e.ty.version.as_str()) {
                versions.push(&e.ty.version);
            }
        }
        let gv = |v: &str| json!({"groupVersion": format!("{group}/{v}"), "version": v});
        json!({
            "name": group,
            "versions": versions.iter().map(|v| gv(v)).collect::<Vec<_>>(),
            "preferredVersion": versions.first().map(|v| gv(v)),
        })
    }

    /// `GET /apis`: every named group, preferred version first registered.
    pub(crate) fn groups(&self) -> Value {
        let mut names: Vec<&str> = Vec::new();
        for e in self.entries.iter().filter(|e| !e.ty.group.is_empty()) {
            if !names.contains(&e.ty.group.as_str()) {
                names.push(&e.ty.group);
            }
        }
        json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": names.iter().map(|g| self.group_entry(g)).collect::<Vec<_>>(),
        })
    }

    /// `GET /apis/{group}`.
    pub(crate) fn group(&self, group: &str) -> Option<Value> {
        if group.is_empty() || !self.entries.iter().any(|e| e.ty.group == group) {
            return None;
        }
        let mut v = self.group_entry(group);
        v["kind"] = json!("APIGroup");
        v["apiVersion"] = json!("v1");
        Some(v)
    }

    /// `GET /api/v1` or `GET /apis/{group}/{version}`: the resources of a group version.
    pub(crate) fn resources(&self, group: &str, version: &str) -> Option<Value> {
        let mut resources = Vec::new();
        for e in self
            .entries
            .iter()
            .filter(|e| e.ty.group == group && e.ty.version == version)
        {
            let ty = &e.ty;
            resources.push(json!({
                "name": ty.plural,
                "singularName": ty.kind.to_ascii_lowercase(),
                "namespaced": ty.namespaced,
                "kind": ty.kind,
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            }));
            if ty.has_status {
                resources.push(json!({
                    "name": format!("{}/status", ty.plural),
                    "singularName": "",
                    "namespaced": ty.namespaced,
                    "kind": ty.kind,
                    "verbs": ["get", "patch", "update"],
                }));
            }
        }
        if resources.is_empty() {
            return None;
        }
        let gv = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        Some(json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": resources,
        }))
    }

    /// A discovery document for `path`, if it is a discovery path.
    pub(crate) fn discovery(&self, path: &str, server_address: &str) -> Option<Value> {
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        match segs.as_slice() {
            ["api"] => Some(self.core_versions(server_address)),
            ["apis"] => Some(self.groups()),
            ["api", v] => self.resources("", v),
            ["apis", g] => self.group(g),
            ["apis", g, v] => self.resources(g, v),
            _ => None,
        }
    }
}

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Index into the registry.
    pub(crate) res: usize,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) status: bool,
}

/// Parses an API path (`/api/v1/...` or `/apis/{group}/{version}/...`). `None` means "not a
/// resource path we serve" (the caller answers 404).
pub(crate) fn parse_path(reg: &Registry, path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    if rest.iter().any(|s| s.is_empty()) {
        return None;
    }
    // `/namespaces/{ns}/{plural}...` unless it addresses the Namespace object itself
    // (`/api/v1/namespaces/{name}[/status]`).
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..] if !(group.is_empty() && *plural == "status") => (
            Some(*ns),
            std::iter::once(*plural)
                .chain(tail.iter().copied())
                .collect(),
        ),
        _ => (None, rest.to_vec()),
    };
    let (plural, name, status) = match rest.as_slice() {
        [plural] => (*plural, None, false),
        [plural, name] => (*plural, Some(*name), false),
        [plural, name, "status"] => (*plural, Some(*name), true),
        _ => return None,
    };
    let res = reg.find(group, version, plural)?;
    let ty = &reg.get(res).ty;
    if (namespace.is_some() && !ty.namespaced) || (status && !ty.has_status) {
        return None;
    }
    // A namespaced object is addressed only through its namespace.
    if name.is_some() && ty.namespaced && namespace.is_none() {
        return None;
    }
    Some(Target {
        res,
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let r = Registry::preloaded();
        let t = parse_path(&r, "/api/v1/namespaces/ns/services").unwrap();
        assert_eq!(r.get(t.res).ty.plural, "services");
        assert_eq!(t.namespace.as_deref(), Some("ns"));
        assert!(t.name.is_none());
        let t = parse_path(&r, "/api/v1/namespaces/ns").unwrap();
        assert_eq!(r.get(t.res).ty.plural, "namespaces");
        assert_eq!(t.name.as_deref(), Some("ns"));
        let t = parse_path(&r, "/api/v1/namespaces/ns/status").unwrap();
        assert!(t.status);
        let t = parse_path(
            &r,
            "/apis/coordination.k8s.io/v1/namespaces/a/leases/l/status",
        );
        assert!(t.is_none(), "leases have no status subresource: {t:?}");
        let t = parse_path(
            &r,
            "/apis/gateway.networking.k8s.io/v1beta1/referencegrants",
        )
        .unwrap();
        let v1 = r
            .find("gateway.networking.k8s.io", "v1", "referencegrants")
            .unwrap();
        assert_eq!(r.get(t.res).storage, r.get(v1).storage);
        assert!(parse_path(&r, "/apis/gateway.networking.k8s.io/v1/gateways/x").is_none());
        assert!(parse_path(&r, "/apis/x/v1/things").is_none());
        assert!(parse_path(&r, "/api/v1/namespaces/a/namespaces").is_none());
    }

    #[test]
    fn discovery_documents() {
        let r = Registry::preloaded();
        let groups = r.discovery("/apis", "x").unwrap();
        let gw = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "gateway.networking.k8s.io")
            .unwrap();
        assert_eq!(gw["preferredVersion"]["version"], "v1");
        assert_eq!(gw["versions"].as_array().unwrap().len(), 2);
        let core = r.discovery("/api/v1", "x").unwrap();
        assert!(
            core["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["name"] == "services/status")
        );
        assert!(r.discovery("/apis/nope/v1", "x").is_none());
        assert!(r.discovery("/apis/gatekit.io", "x").is_some());
    }

    proptest::proptest! {
        #[test]
        fn path_parsing_never_panics(p in "[a-z0-9/.%-]{0,60}") {
            let r = Registry::preloaded();
            let _ = parse_path(&r, &p);
            let _ = r.discovery(&p, "x");
        }
    }
}
