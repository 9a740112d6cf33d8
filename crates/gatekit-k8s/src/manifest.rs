//! Loading Kubernetes manifests from files into a typed [`ResourceSet`].
//!
//! Files are `*.yaml`, `*.yml` (any number of `---`-separated documents) and `*.json`
//! (one document). Each document is parsed into a JSON value, then deserialized into the
//! type its `apiVersion` and `kind` name (one document at a time: the value is dropped
//! before the next document is parsed), with [`serde_path_to_error`] tracking where in
//! the document a type error occurred. A `v1` `List` is flattened into its `items`.
//!
//! gatekit's policies (`BackendPolicy`, `TrafficPolicy`) are also checked beyond their
//! schema as they are loaded ([`BackendPolicySpec::validate`](crate::types::BackendPolicySpec::validate),
//! [`TrafficPolicySpec::validate`](crate::types::TrafficPolicySpec::validate)): an invalid
//! value (a bad duration, a quota of 0 requests, a percentage above 100) is a load error
//! like a type error, with its field path, because a policy that is silently not applied
//! (a rate limit, a circuit breaker) is a security downgrade.
//!
//! Error reporting is the point of this module: every [`ManifestError`] names the file,
//! the document index (0-based, counting every `---`-separated document in the file),
//! the resource's kind/namespace/name when the document got far enough to have them, the
//! field path (for example `spec.listeners[0].port`) and the reason. Loading does not
//! stop at the first error: all files are read and every error is returned, so
//! `gatekit validate` can show them all at once.
//!
//! Documents of kinds gatekit does not read (ConfigMaps, Deployments, ...) are skipped
//! with a [`Warning`], so whole application manifests can be pointed at. Namespaced
//! resources without `metadata.namespace` are put in `default`, as `kubectl apply` does.
//! Two documents with the same kind, namespace and name are an error (which one should
//! win is not knowable).
//!
//! Directory walks skip entries whose name starts with `.`: Kubernetes ConfigMap and
//! Secret volumes hold `..data` and `..<timestamp>` entries that would otherwise make
//! every file appear twice.

pub use crate::error::ManifestError;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::status::ResourceRef;
use crate::types::{
    BackendPolicy, BackendTlsPolicy, BackendTrafficPolicy, Check, ClientTrafficPolicy,
    CompactEndpointSlice, CompactHttpRoute, CompactService, ConfigMap, EndpointSlice, Gateway,
    GatewayClass, GrpcRoute, HttpRoute, ListenerSet, Namespace, Object, ObjectMeta, ReferenceGrant,
    Secret, SecurityOverride, SecurityPolicy, Service, TcpRoute, TlsRoute, TrafficPolicy, UdpRoute,
    XBackendTrafficPolicy,
};

/// Every resource gatekit reads, by kind.
///
/// Built by [`ResourceSet::from_dirs`] or [`ResourceSet::from_documents`], or by hand
/// (fields are public; namespaced resources must carry a namespace).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ResourceSet {
    /// `gateway.networking.k8s.io` GatewayClasses.
    pub gateway_classes: Vec<GatewayClass>,
    /// `gateway.networking.k8s.io` Gateways.
    pub gateways: Vec<Gateway>,
    /// `gateway.networking.k8s.io/v1` ListenerSets (GEP-1713).
    pub listener_sets: Vec<ListenerSet>,
    /// `gateway.networking.k8s.io` HTTPRoutes, as translation reads them (converted
    /// from the parsed [`HttpRoute`] with [`From`]).
    pub http_routes: Vec<CompactHttpRoute>,
    /// `gateway.networking.k8s.io` GRPCRoutes.
    pub grpc_routes: Vec<GrpcRoute>,
    /// `gateway.networking.k8s.io` TLSRoutes (`v1`, `v1alpha3` and `v1alpha2`).
    pub tls_routes: Vec<TlsRoute>,
    /// `gateway.networking.k8s.io` TCPRoutes (`v1` and `v1alpha2`).
    pub tcp_routes: Vec<TcpRoute>,
    /// `gateway.networking.k8s.io` UDPRoutes (`v1` and `v1alpha2`).
    pub udp_routes: Vec<UdpRoute>,
    /// `gateway.networking.k8s.io` ReferenceGrants (`v1` and `v1beta1`).
    pub reference_grants: Vec<ReferenceGrant>,
    /// Core Services, as translation reads them (converted from the parsed [`Service`]
    /// with [`From`]).
    pub services: Vec<CompactService>,
    /// Core Namespaces (their labels feed `allowedRoutes` selectors).
    pub namespaces: Vec<Namespace>,
    /// `discovery.k8s.io/v1` EndpointSlices, as translation reads them (converted from
    /// the parsed [`EndpointSlice`] with [`From`]).
    pub endpoint_slices: Vec<CompactEndpointSlice>,
    /// Core Secrets (TLS certificates).
    pub secrets: Vec<Secret>,
    /// Core ConfigMaps (CA certificates, `ca.crt`).
    pub config_maps: Vec<ConfigMap>,
    /// `gatekit.io/v1alpha1` BackendPolicies.
    pub backend_policies: Vec<BackendPolicy>,
    /// `gatekit.io/v1alpha1` TrafficPolicies.
    pub traffic_policies: Vec<TrafficPolicy>,
    /// `gateway.envoyproxy.io/v1alpha1` BackendTrafficPolicies (Envoy Gateway's).
    pub backend_traffic_policies: Vec<BackendTrafficPolicy>,
    /// `gateway.networking.x-k8s.io/v1alpha1` XBackendTrafficPolicies (session
    /// persistence and retry constraints per Service).
    pub x_backend_traffic_policies: Vec<XBackendTrafficPolicy>,
    /// `gateway.networking.k8s.io/v1` BackendTLSPolicies (and `v1alpha3`).
    pub backend_tls_policies: Vec<BackendTlsPolicy>,
    /// `gateway.envoyproxy.io/v1alpha1` ClientTrafficPolicies (Envoy Gateway's: listener
    /// TLS settings, client certificates, PROXY protocol).
    pub client_traffic_policies: Vec<ClientTrafficPolicy>,
    /// `gateway.envoyproxy.io/v1alpha1` SecurityPolicies (Envoy Gateway's: API keys,
    /// basic auth, JWT, external authorization, authorization rules).
    pub security_policies: Vec<SecurityPolicy>,
    /// `gatekit.io/v1alpha1` SecurityOverrides (access checks a Gateway's routes cannot
    /// remove).
    pub security_overrides: Vec<SecurityOverride>,
}

/// A document that was skipped, with why, or read with a remark (an abbreviation
/// accepted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    file: String,
    document: usize,
    api_version: String,
    kind: String,
    name: Option<String>,
    message: String,
}

impl Warning {
    /// The file (or source name) the document came from.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The document's 0-based index in the file.
    pub fn document(&self) -> usize {
        self.document
    }

    /// The document's kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// What happened.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (document {}): {}/{}",
            self.file, self.document, self.api_version, self.kind
        )?;
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Where a document came from and what it says it is.
struct DocContext<'a> {
    file: &'a str,
    index: usize,
    api_version: String,
    kind: String,
    namespace: Option<String>,
    name: Option<String>,
}

impl DocContext<'_> {
    fn error(&self, field: impl Into<String>, reason: impl Into<String>) -> ManifestError {
        ManifestError {
            kind: Some(self.kind.clone()),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            ..ManifestError::in_doc(self.file, self.index, reason)
        }
        .with_field(field)
    }
}

type Seen = HashMap<(&'static str, Option<String>, String), (String, usize)>;

/// Where each loaded resource came from: its file and 0-based document index.
#[derive(Clone, Debug, Default)]
pub struct Sources(Seen);

impl Sources {
    /// The file and document of the resource `kind` `namespace/name` (no namespace for
    /// cluster-scoped kinds), if it was loaded.
    pub fn of(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<(&str, usize)> {
        let key = (
            kind_static(kind),
            namespace.map(str::to_owned),
            name.to_owned(),
        );
        self.0.get(&key).map(|(file, doc)| (file.as_str(), *doc))
    }
}

// === impl ResourceSet ===

/// Calls `$m!(field, "Kind")` for every field of [`ResourceSet`] (the kind as in
/// manifests), in field order, so per-kind code lists each kind once (here and in the
/// crates that keep resource sets, such as gatekit-gateway's file cache).
#[doc(hidden)]
#[macro_export]
macro_rules! for_each_resource_kind {
    ($m:ident) => {
        $m!(gateway_classes, "GatewayClass");
        $m!(gateways, "Gateway");
        $m!(listener_sets, "ListenerSet");
        $m!(http_routes, "HTTPRoute");
        $m!(grpc_routes, "GRPCRoute");
        $m!(tls_routes, "TLSRoute");
        $m!(tcp_routes, "TCPRoute");
        $m!(udp_routes, "UDPRoute");
        $m!(reference_grants, "ReferenceGrant");
        $m!(services, "Service");
        $m!(namespaces, "Namespace");
        $m!(endpoint_slices, "EndpointSlice");
        $m!(secrets, "Secret");
        $m!(config_maps, "ConfigMap");
        $m!(backend_policies, "BackendPolicy");
        $m!(traffic_policies, "TrafficPolicy");
        $m!(backend_traffic_policies, "BackendTrafficPolicy");
        $m!(x_backend_traffic_policies, "XBackendTrafficPolicy");
        $m!(backend_tls_policies, "BackendTLSPolicy");
        $m!(client_traffic_policies, "ClientTrafficPolicy");
        $m!(security_policies, "SecurityPolicy");
        $m!(security_overrides, "SecurityOverride");
    };
}
use for_each_resource_kind as each_kind;

/// How many kinds a [`ResourceSet`] holds (its lists).
pub const KINDS: usize = {
    let mut n = 0;
    macro_rules! one {
        ($field:ident, $kind:literal) => {
            n += 1;
        };
    }
    each_kind!(one);
    n
};

/// A resource's reference (a missing name is the empty name).
fn object_ref(kind: &'static str, object: &impl Object) -> ResourceRef {
    ResourceRef::new(kind, object.namespace(), object.name())
}

/// Adds to `out` every object of `kind` that is in `new` and not in `old`, in `old`
/// and not in `new`, or in both but different (by kind, namespace and name).
fn diff_kind<'a, T: PartialEq + Object + 'a>(
    kind: &'static str,
    old: impl Iterator<Item = &'a [T]>,
    new: impl Iterator<Item = &'a [T]>,
    out: &mut BTreeSet<ResourceRef>,
) {
    let key = |item: &'a T| -> (Option<&'a str>, &'a str) { (item.namespace(), item.name()) };
    let mut before: HashMap<(Option<&str>, &str), &T> =
        old.flatten().map(|item| (key(item), item)).collect();
    for item in new.flatten() {
        match before.remove(&key(item)) {
            Some(was) if was == item => {}
            _ => {
                out.insert(object_ref(kind, item));
            }
        }
    }
    for (_, gone) in before {
        out.insert(object_ref(kind, gone));
    }
}

impl ResourceSet {
    /// The reference (kind as in manifests, namespace, name) of every resource, kind by
    /// kind in field order.
    pub fn refs(&self) -> Vec<ResourceRef> {
        let mut refs = Vec::new();
        macro_rules! push_refs {
            ($field:ident, $kind:literal) => {
                refs.extend(self.$field.iter().map(|r| object_ref($kind, r)));
            };
        }
        each_kind!(push_refs);
        refs
    }

    /// Gives back the spare capacity of every list that holds less than half of what it
    /// has room for (after many resources were removed; a list that is nearly full is
    /// left alone, so a steady stream of small changes moves nothing).
    pub fn shrink_sparse(&mut self) {
        macro_rules! shrink {
            ($field:ident, $kind:literal) => {
                if self.$field.capacity() > 2 * self.$field.len() + 16 {
                    self.$field.shrink_to_fit();
                }
            };
        }
        each_kind!(shrink);
    }

    /// The objects that differ between the resources of `old` and those of `new` (each
    /// a list of sets, read as their union): added, removed, or present in both with
    /// any difference. Order does not count: the same objects in another order, or
    /// moved from one set of the list to another, are no change.
    pub fn changed_objects(old: &[&ResourceSet], new: &[&ResourceSet]) -> BTreeSet<ResourceRef> {
        let mut out = BTreeSet::new();
        macro_rules! diff {
            ($field:ident, $kind:literal) => {
                diff_kind(
                    $kind,
                    old.iter().map(|s| s.$field.as_slice()),
                    new.iter().map(|s| s.$field.as_slice()),
                    &mut out,
                );
            };
        }
        each_kind!(diff);
        out
    }

    /// Loads every `*.yaml`, `*.yml` and `*.json` file under these directories (walked
    /// recursively in name order, skipping names that start with `.`). A path that is a
    /// file is loaded as is.
    ///
    /// # Errors
    ///
    /// Every unreadable file and every invalid document; nothing is returned when there
    /// is any error.
    pub fn from_dirs(dirs: &[PathBuf]) -> Result<(ResourceSet, Vec<Warning>), Vec<ManifestError>> {
        Self::from_dirs_with_sources(dirs).map(|(set, warnings, _)| (set, warnings))
    }

    /// [`from_dirs`](Self::from_dirs), also telling which file and document each
    /// resource came from (what `gatekit validate` names beside a translation error).
    ///
    /// # Errors
    ///
    /// As [`from_dirs`](Self::from_dirs).
    pub fn from_dirs_with_sources(
        dirs: &[PathBuf],
    ) -> Result<(ResourceSet, Vec<Warning>, Sources), Vec<ManifestError>> {
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for dir in dirs {
            if dir.is_file() {
                files.push(dir.clone());
            } else {
                collect_files(dir, &mut files, &mut errors);
            }
        }
        let mut texts = Vec::with_capacity(files.len());
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => texts.push((file.display().to_string(), text)),
                Err(e) => errors.push(ManifestError::in_file(
                    &file.display().to_string(),
                    format!("cannot read: {e}"),
                )),
            }
        }
        match Self::load(texts) {
            Ok(ok) if errors.is_empty() => Ok(ok),
            Ok(_) => Err(errors),
            Err(more) => {
                errors.extend(more);
                Err(errors)
            }
        }
    }

    /// Loads documents from `(source name, text)` pairs: the text is JSON when the name
    /// ends in `.json`, YAML (possibly multi-document) otherwise. For tests and fuzzing;
    /// [`from_dirs`](Self::from_dirs) reads files and calls this.
    ///
    /// # Errors
    ///
    /// Every invalid document, as for [`from_dirs`](Self::from_dirs).
    pub fn from_documents<I, S, T>(
        documents: I,
    ) -> Result<(ResourceSet, Vec<Warning>), Vec<ManifestError>>
    where
        I: IntoIterator<Item = (S, T)>,
        S: AsRef<str>,
        T: AsRef<str>,
    {
        Self::load(documents).map(|(set, warnings, _)| (set, warnings))
    }

    fn load<I, S, T>(
        documents: I,
    ) -> Result<(ResourceSet, Vec<Warning>, Sources), Vec<ManifestError>>
    where
        I: IntoIterator<Item = (S, T)>,
        S: AsRef<str>,
        T: AsRef<str>,
    {
        let mut set = ResourceSet::default();
        let mut warnings = Vec::new();
        let mut errors = Vec::new();
        let mut seen = Seen::new();
        let mut doc_errors = Vec::new();
        for (source, text) in documents {
            let source = source.as_ref();
            // One document's tree at a time: parsed, converted, dropped. (Holding every
            // document's tree of a 5,000-route file at once peaked at tens of megabytes,
            // which the allocator then kept.) A file's syntax errors still come before
            // its documents' errors.
            for_each_document(source, text.as_ref(), &mut errors, |index, doc| {
                set.add_document(
                    source,
                    index,
                    doc,
                    &mut seen,
                    &mut warnings,
                    &mut doc_errors,
                );
            });
            errors.append(&mut doc_errors);
        }
        if errors.is_empty() {
            Ok((set, warnings, Sources(seen)))
        } else {
            Err(errors)
        }
    }

    fn add_document(
        &mut self,
        file: &str,
        index: usize,
        doc: Value,
        seen: &mut Seen,
        warnings: &mut Vec<Warning>,
        errors: &mut Vec<ManifestError>,
    ) {
        let Value::Object(map) = &doc else {
            errors.push(ManifestError::in_doc(
                file,
                index,
                "the document is not a mapping (expected a Kubernetes object)",
            ));
            return;
        };
        let api_version = map.get("apiVersion").and_then(Value::as_str);
        let kind = map.get("kind").and_then(Value::as_str);
        let (Some(api_version), Some(kind)) = (api_version, kind) else {
            let field = if api_version.is_none() {
                "apiVersion"
            } else {
                "kind"
            };
            errors.push(
                ManifestError::in_doc(file, index, "missing (or not a string)").with_field(field),
            );
            return;
        };
        let meta = map.get("metadata");
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let namespace = meta
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let cx = DocContext {
            file,
            index,
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            namespace,
            name,
        };

        if api_version == "v1" && kind == "List" {
            let Some(items) = map.get("items").and_then(Value::as_array) else {
                errors.push(cx.error("items", "a List needs an array of items"));
                return;
            };
            for (i, item) in items.iter().enumerate() {
                let before = errors.len();
                self.add_document(file, index, item.clone(), seen, warnings, errors);
                for e in &mut errors[before..] {
                    e.field = Some(match e.field.take() {
                        Some(f) => format!("items[{i}].{f}"),
                        None => format!("items[{i}]"),
                    });
                }
            }
            return;
        }

        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let version = api_version.rsplit_once('/').map_or(api_version, |(_, v)| v);
        let gw = |v: &str| v == "v1" || v == "v1beta1";
        // Reads the document into `self.$list` (namespaced or not): as it is parsed, or
        // parsed as a `$ty` and converted (`From<&$ty>`) to what the list keeps.
        macro_rules! load {
            ($namespaced:expr, $list:ident) => {
                load!(@push $namespaced, $list, |r| &mut r.metadata, std::convert::identity)
            };
            ($namespaced:expr, $list:ident, $ty:ty) => {
                load!(@push $namespaced, $list, |r: &mut $ty| &mut r.metadata, |r: $ty| (&r).into())
            };
            (@push $namespaced:expr, $list:ident, $metadata:expr, $convert:expr) => {
                push(
                    &cx,
                    doc,
                    $namespaced,
                    seen,
                    warnings,
                    errors,
                    &mut self.$list,
                    $metadata,
                    $convert,
                )
            };
        }
        match (group, version, kind) {
            ("gateway.networking.k8s.io", v, "GatewayClass") if gw(v) => {
                load!(false, gateway_classes)
            }
            ("gateway.networking.k8s.io", v, "Gateway") if gw(v) => load!(true, gateways),
            ("gateway.networking.k8s.io", "v1", "ListenerSet") => load!(true, listener_sets),
            ("gateway.networking.k8s.io", v, "HTTPRoute") if gw(v) => {
                load!(true, http_routes, HttpRoute)
            }
            ("gateway.networking.k8s.io", "v1", "GRPCRoute") => load!(true, grpc_routes),
            ("gateway.networking.k8s.io", "v1" | "v1alpha3" | "v1alpha2", "TLSRoute") => {
                load!(true, tls_routes)
            }
            ("gateway.networking.k8s.io", "v1" | "v1alpha2", "TCPRoute") => {
                load!(true, tcp_routes)
            }
            ("gateway.networking.k8s.io", "v1" | "v1alpha2", "UDPRoute") => {
                load!(true, udp_routes)
            }
            ("gateway.networking.k8s.io", "v1" | "v1alpha3", "BackendTLSPolicy") => {
                load!(true, backend_tls_policies)
            }
            ("gateway.networking.k8s.io", v, "ReferenceGrant") if gw(v) => {
                load!(true, reference_grants)
            }
            ("", "v1", "Service") => load!(true, services, Service),
            ("", "v1", "Namespace") => load!(false, namespaces),
            ("", "v1", "Secret") => load!(true, secrets),
            ("", "v1", "ConfigMap") => load!(true, config_maps),
            ("discovery.k8s.io", "v1", "EndpointSlice") => {
                load!(true, endpoint_slices, EndpointSlice)
            }
            ("gatekit.io", "v1alpha1", "BackendPolicy") => load!(true, backend_policies),
            ("gatekit.io", "v1alpha1", "TrafficPolicy") => load!(true, traffic_policies),
            ("gateway.envoyproxy.io", "v1alpha1", "BackendTrafficPolicy") => {
                load!(true, backend_traffic_policies)
            }
            ("gateway.networking.x-k8s.io", "v1alpha1", "XBackendTrafficPolicy") => {
                load!(true, x_backend_traffic_policies)
            }
            ("gateway.envoyproxy.io", "v1alpha1", "ClientTrafficPolicy") => {
                load!(true, client_traffic_policies)
            }
            ("gateway.envoyproxy.io", "v1alpha1", "SecurityPolicy") => {
                load!(true, security_policies)
            }
            ("gatekit.io", "v1alpha1", "SecurityOverride") => load!(true, security_overrides),
            _ => warnings.push(Warning {
                file: file.to_owned(),
                document: index,
                api_version: cx.api_version.clone(),
                kind: cx.kind.clone(),
                name: cx.name.clone(),
                message: "kind not read by gatekit; skipped".to_owned(),
            }),
        }
    }
}

/// Prepares `doc` ([`Check::prepare`]), deserializes it as `T`, checks it ([`Check`]),
/// defaults its namespace, checks for duplicates and pushes it (as what the list keeps:
/// the compact form of an HTTPRoute, a Service or an EndpointSlice, made after every
/// check).
#[expect(
    clippy::too_many_arguments,
    reason = "the loader's accumulators, passed down one call"
)]
fn push<T: DeserializeOwned + Check, U>(
    cx: &DocContext<'_>,
    mut doc: Value,
    namespaced: bool,
    seen: &mut Seen,
    warnings: &mut Vec<Warning>,
    errors: &mut Vec<ManifestError>,
    into: &mut Vec<U>,
    meta: impl Fn(&mut T) -> &mut ObjectMeta,
    convert: impl FnOnce(T) -> U,
) {
    let prepared = T::prepare(&mut doc);
    if !prepared.is_empty() {
        errors.extend(prepared.iter().map(|e| cx.error(e.field(), e.reason())));
        return;
    }
    let mut resource: T = match serde_path_to_error::deserialize(&doc) {
        Ok(r) => r,
        Err(e) => {
            let field = e.path().to_string();
            errors.push(cx.error(field, e.into_inner().to_string()));
            return;
        }
    };
    let m = meta(&mut resource);
    let Some(name) = m.name.clone().filter(|n| !n.is_empty()) else {
        errors.push(cx.error("metadata.name", "missing"));
        return;
    };
    if namespaced {
        m.namespace.get_or_insert_with(|| "default".to_owned());
    } else if m.namespace.is_some() {
        m.namespace = None;
    }
    let namespace = m.namespace.clone();
    if let Err(invalid) = resource.check() {
        errors.extend(invalid.into_iter().map(|e| ManifestError {
            namespace: namespace.clone(),
            ..cx.error(e.field(), e.reason())
        }));
        return;
    }
    for w in resource.warnings() {
        warnings.push(Warning {
            file: cx.file.to_owned(),
            document: cx.index,
            api_version: cx.api_version.clone(),
            kind: cx.kind.clone(),
            name: Some(name.clone()),
            message: format!("{}: {} (read anyway)", w.field(), w.reason()),
        });
    }
    let m = meta(&mut resource);
    // `kind` strings of interest are 'static; intern through a match to keep the key small.
    let kind: &'static str = kind_static(&cx.kind);
    let key = (kind, m.namespace.clone(), name);
    if let Some((file, index)) = seen.get(&key) {
        errors.push(cx.error(
            "metadata.name",
            format!("duplicate: the same resource is also defined in {file} (document {index})"),
        ));
        return;
    }
    seen.insert(key, (cx.file.to_owned(), cx.index));
    into.push(convert(resource));
}

fn kind_static(kind: &str) -> &'static str {
    macro_rules! known {
        ($field:ident, $kind:literal) => {
            if kind == $kind {
                return $kind;
            }
        };
    }
    each_kind!(known);
    "Other"
}

/// Parses a file's text into documents (JSON values) and hands each to `f` as soon as it
/// is parsed. Empty YAML documents are skipped but still counted, so indices match what
/// an editor shows between `---` lines.
fn for_each_document(
    file: &str,
    text: &str,
    errors: &mut Vec<ManifestError>,
    mut f: impl FnMut(usize, Value),
) {
    if file.ends_with(".json") {
        match serde_json::from_str::<Value>(text) {
            Ok(v) => f(0, v),
            Err(e) => errors.push(ManifestError::in_doc(file, 0, format!("invalid JSON: {e}"))),
        }
        return;
    }
    for (index, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        match Value::deserialize(de) {
            Ok(Value::Null) => {}
            Ok(v) => f(index, v),
            Err(e) => {
                // After a syntax error the rest of the stream cannot be trusted.
                errors.push(ManifestError::in_doc(
                    file,
                    index,
                    format!("invalid YAML: {e}"),
                ));
                break;
            }
        }
    }
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<ManifestError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(ManifestError::in_file(
                &dir.display().to_string(),
                format!("cannot read directory: {e}"),
            ));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            collect_files(&path, files, errors);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            files.push(path);
        }
    }
}
