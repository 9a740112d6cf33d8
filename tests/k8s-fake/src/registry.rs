//! The resource registry: which `(group, version, plural)` triples the fake serves, and how a
//! request path maps onto one of them.
//!
//! Each served resource has a *storage* index: aliases (the `v1beta1` ReferenceGrant next to
//! the `v1` one) share the storage of their canonical version, so an object written through
//! one version is listed and watched through the other, as the real apiserver does for
//! convertible versions. Objects are stored without `apiVersion`/`kind`; responses stamp the
//! requested version's pair on the way out.

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
}
