//! BackendTLSPolicy (Gateway API v1, GEP-1897): TLS from the gateway to backends, and
//! the client certificate a Gateway presents to them (`spec.tls.backend
//! .clientCertificateRef`, GEP-3155).
//!
//! # Attachment
//!
//! A policy targets Services of its own namespace (`group: ""`, `kind: Service`): the
//! whole Service, or one port when `sectionName` names the Service port. Policies are
//! attached oldest first (`creationTimestamp`, then namespace/name); a policy naming a
//! (Service, sectionName) an older one holds is `Accepted=False`, `Conflicted` there. A
//! Service port takes the policy of its own name, else the whole-Service one. A target
//! Service or port that does not exist is `Accepted=False`, `TargetNotFound`.
//!
//! # Validation
//!
//! - `caCertificateRefs`: ConfigMaps or Secrets of the policy's namespace, with the PEM
//!   bundle under `ca.crt`; the bundles of every reference are trusted together. Another
//!   kind is `ResolvedRefs=False`, `InvalidKind`; a missing object, a missing `ca.crt` or
//!   one that holds no parsable certificate is `ResolvedRefs=False`,
//!   `InvalidCACertificateRef`; when no reference is valid the policy is also
//!   `Accepted=False`, `NoValidCACertificate`.
//! - `wellKnownCACertificates: System`: the operating system's CA certificates
//!   ([`TlsSettings::system_roots`]); any other value, or both or neither of the two
//!   fields, is `Accepted=False`, `Invalid`.
//! - `hostname` is the SNI and, without `subjectAltNames`, the name the certificate
//!   must carry; with `subjectAltNames` (type `Hostname` or `URI`), the certificate must
//!   carry one of those instead.
//!
//! A policy that is not accepted, or has an invalid reference, still covers its
//! targets: a backendRef to such a port is refused (the route's `ResolvedRefs=False`,
//! reason `InvalidBackendTLSPolicy`, and that share of traffic answers 500). Traffic to
//! a Service a policy covers never falls back to cleartext.
//!
//! # Status
//!
//! Ancestors are the Gateways (of the served class) whose HTTPRoutes or GRPCRoutes
//! reference a targeted Service; a target no such route reaches is reported against
//! the Service itself. Each ancestor gets `Accepted` and `ResolvedRefs`.
//!
//! # appProtocol
//!
//! A covered port speaks TLS whatever its `appProtocol`: HTTP/1.1 over TLS (ALPN
//! `http/1.1`) for none, `http`, `https`, `kubernetes.io/ws` and `kubernetes.io/wss`,
//! h2 over TLS (ALPN `h2`) for `h2c`, `kubernetes.io/h2c`, `grpc` and for GRPCRoutes'
//! ports without one. Without a policy, `https` and `kubernetes.io/wss` stay refused.
//!
//! # Client certificates and upstream identity
//!
//! A Gateway's `clientCertificateRef` (a `kubernetes.io/tls` Secret; another
//! namespace needs a ReferenceGrant) is presented to every TLS backend its routes
//! reach. A problem is the Gateway's `ResolvedRefs=False`
//! (`InvalidClientCertificateRef` or `RefNotPermitted`) and its routes' TLS backends get
//! no client certificate. One Service port reached from Gateways with different client
//! certificates becomes one upstream per certificate: the upstream named
//! [`backend_name`](super::backend_name) for Gateways without one, and that name with
//! `@client=<secret namespace>/<secret name>` appended for each certificate (the routes
//! of each Gateway name their own). Upstreams, and the core client's connection
//! pools (keyed by endpoint and [`TlsSettings`] by value), therefore never mix
//! connections with different TLS settings.
//!
//! [`TlsSettings`]: gatekit_core::client::TlsSettings
//! [`TlsSettings::system_roots`]: gatekit_core::client::TlsSettings::system_roots

use std::collections::HashMap;
use std::sync::Arc;

use gatekit_core::ConfigError;
use gatekit_core::client::{SubjectAltName, TlsSettings};

use super::Certificate;
use super::backend::{Context, name_of, ns_of};
use super::policy::{by_age, gateway_ancestor, service_ancestor};
use crate::status::{AncestorRef, AncestorStatus, Condition, ResourceRef, ResourceStatus, reason};
use crate::types::{BackendTlsPolicy, CompactService};

/// `Accepted=False`: no `caCertificateRefs` entry is valid.
pub const NO_VALID_CA_CERTIFICATE: &str = "NoValidCACertificate";
/// `ResolvedRefs=False`: a `caCertificateRefs` entry is missing or malformed.
pub const INVALID_CA_CERTIFICATE_REF: &str = "InvalidCACertificateRef";
/// A route's `ResolvedRefs=False`: the backend's BackendTLSPolicy cannot be used.
pub const INVALID_BACKEND_TLS_POLICY: &str = "InvalidBackendTLSPolicy";
/// A Gateway's `ResolvedRefs=False`: its backend client certificate is unusable.
pub const INVALID_CLIENT_CERTIFICATE_REF: &str = "InvalidClientCertificateRef";

/// The `appProtocol` value `kubernetes.io/wss` (WebSocket over TLS).
const APP_PROTOCOL_WSS: &str = "kubernetes.io/wss";

/// Which certificates verify an upstream's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsRoots {
    /// The CA certificates of the policy's `caCertificateRefs`, PEM, concatenated.
    Pem(Arc<[u8]>),
    /// The operating system's (`wellKnownCACertificates: System`).
    System,
}

/// TLS to an upstream, from the BackendTLSPolicy covering its Service port and the
/// client certificate of the Gateways whose routes use it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamTls {
    policy: ResourceRef,
    roots: TlsRoots,
    hostname: String,
    subject_alt_names: Vec<SubjectAltName>,
    client_certificate: Option<Certificate>,
    /// Built from the rest when translated (checking it can be built).
    settings: TlsSettings,
}

impl UpstreamTls {
    /// The BackendTLSPolicy.
    pub fn policy(&self) -> &ResourceRef {
        &self.policy
    }

    /// The roots that verify the upstream's certificate.
    pub fn roots(&self) -> &TlsRoots {
        &self.roots
    }

    /// The SNI, and without [`subject_alt_names`](Self::subject_alt_names) the name
    /// the certificate must carry.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Names of which the certificate must carry one (empty: [`hostname`](Self::hostname)).
    pub fn subject_alt_names(&self) -> &[SubjectAltName] {
        &self.subject_alt_names
    }

    /// The client certificate presented (the Gateway's `clientCertificateRef`).
    pub fn client_certificate(&self) -> Option<&Certificate> {
        self.client_certificate.as_ref()
    }

    /// The core client's TLS settings for these (built once, when translated; the
    /// `System` roots are loaded then, once per process).
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }
}

/// A usable policy (without the client certificate), or why the policy cannot be used.
pub(crate) type PolicyTls = Result<Arc<UpstreamTls>, Arc<str>>;

/// The policies of one Service: the whole Service's and per port name.
#[derive(Clone, Debug, Default)]
pub(crate) struct ServiceTls {
    whole: Option<(String, PolicyTls)>,
    ports: HashMap<String, (String, PolicyTls)>,
}

/// What the BackendTLSPolicy pass leaves in a [`Context`].
#[derive(Clone, Debug, Default)]
pub(crate) struct TlsMaps {
    /// By Service (namespace, name).
    services: HashMap<(String, String), ServiceTls>,
    /// Usable Gateway client certificates by Gateway (namespace, name).
    gateway_clients: HashMap<(String, String), Certificate>,
    /// Gateway client certificates by Secret (namespace, name).
    clients: HashMap<(String, String), Certificate>,
    /// Why a Gateway's client certificate is unusable, by Gateway.
    gateway_problems: HashMap<(String, String), (&'static str, String)>,
}

/// The upstream name of `base` (a [`backend_name`](super::backend_name)) for routes of
/// Gateways presenting the client certificate of Secret `client`.
pub(crate) fn client_backend_name(base: &str, client: Option<&(String, String)>) -> String {
    match client {
        None => base.to_owned(),
        Some((ns, name)) => format!("{base}@client={ns}/{name}"),
    }
}

/// Renames, in `rules`, the backends named in `tls_names` to their name for `client`
/// (backendRefs and mirrors, the rule's and each backendRef's).
pub(crate) fn rename_backends(
    rules: &mut [gatekit_core::route::Rule],
    tls_names: &[String],
    client: &(String, String),
) {
    use gatekit_core::route::Filter;
    let rename = |name: &mut String| {
        if tls_names.iter().any(|n| n == name) {
            *name = client_backend_name(name, Some(client));
        }
    };
    let rename_filters = |filters: &mut [Filter]| {
        for f in filters {
            if let Filter::RequestMirror(m) = f {
                rename(&mut m.backend);
            }
        }
    };
    for rule in rules {
        rename_filters(&mut rule.filters);
        for b in &mut rule.backends {
            rename(&mut b.name);
            rename_filters(&mut b.filters);
        }
    }
}

/// The protocol gatekit speaks over TLS to a port with this `appProtocol`, covered by a
/// BackendTLSPolicy; the value back when it is not HTTP.
pub(crate) fn tls_app_protocol(
    value: Option<&str>,
    grpc: bool,
) -> Result<super::AppProtocol, &str> {
    use super::AppProtocol;
    let Some(value) = value else {
        return Ok(if grpc {
            AppProtocol::H2
        } else {
            AppProtocol::Https
        });
    };
    let is = |name: &str| value.eq_ignore_ascii_case(name);
    if is("http")
        || is("https")
        || value == crate::types::APP_PROTOCOL_WS
        || value == APP_PROTOCOL_WSS
    {
        Ok(AppProtocol::Https)
    } else if is("h2c") || is("h2") || is("grpc") || value == crate::types::APP_PROTOCOL_H2C {
        Ok(AppProtocol::H2)
    } else {
        Err(value)
    }
}

/// One policy's validity: the TLS it gives, or the conditions it fails with.
struct Checked {
    tls: PolicyTls,
    /// `Accepted=False` reason and message, when the policy is not accepted.
    refused: Option<(&'static str, String)>,
    /// `ResolvedRefs=False` reason and message, when a reference is invalid.
    unresolved: Option<(&'static str, String)>,
}

impl Context<'_> {
    /// The policy covering port `port` of Service `ns/name`, if any: its TLS, or why
    /// it cannot be used.
    pub(crate) fn backend_tls(
        &self,
        ns: &str,
        name: &str,
        port: &crate::types::compact::CompactServicePort,
    ) -> Option<&PolicyTls> {
        if self.tls.services.is_empty() {
            return None;
        }
        let s = self.tls.services.get(&(ns.to_owned(), name.to_owned()))?;
        port.name()
            .and_then(|n| s.ports.get(n))
            .or(s.whole.as_ref())
            .map(|(_, t)| t)
    }

    /// The client certificate of Secret `(namespace, name)` that some Gateway presents.
    pub(crate) fn client_certificate(&self, secret: &(String, String)) -> Option<&Certificate> {
        self.tls.clients.get(secret)
    }

    /// The Secret (namespace, name) of the client certificate Gateway `ns/name`
    /// presents to TLS backends, if it has a usable one.
    pub(crate) fn gateway_client(&self, ns: &str, name: &str) -> Option<(String, String)> {
        if self.tls.gateway_clients.is_empty() {
            return None;
        }
        let c = self
            .tls
            .gateway_clients
            .get(&(ns.to_owned(), name.to_owned()))?;
        Some((
            c.secret().namespace().unwrap_or_default().to_owned(),
            c.secret().name().to_owned(),
        ))
    }

    /// The `ResolvedRefs` condition of Gateway `ns/name` for its backend client
    /// certificate; `None` when it names none.
    pub(crate) fn gateway_client_condition(
        &self,
        gw: &crate::types::Gateway,
        generation: Option<i64>,
    ) -> Option<Condition> {
        let backend = gw.spec.tls.as_ref()?.backend.as_ref()?;
        backend.client_certificate_ref.as_ref()?;
        let key = (
            ns_of(&gw.metadata).to_owned(),
            name_of(&gw.metadata).to_owned(),
        );
        Some(match self.tls.gateway_problems.get(&key) {
            None => Condition::new(
                reason::RESOLVED_REFS,
                true,
                reason::RESOLVED_REFS,
                "",
                generation,
            ),
            Some((r, m)) => Condition::new(reason::RESOLVED_REFS, false, r, m.clone(), generation),
        })
    }

    /// Takes the BackendTLSPolicy pass's results (for the incremental translator).
    pub(crate) fn take_tls_maps(&mut self) -> TlsMaps {
        std::mem::take(&mut self.tls)
    }

    /// Puts back what [`take_tls_maps`](Self::take_tls_maps) took.
    pub(crate) fn restore_tls_maps(&mut self, maps: TlsMaps) {
        self.tls = maps;
    }

    /// Resolves every served Gateway's client certificate, then attaches every
    /// BackendTLSPolicy to its Services (see the [module docs](self)).
    pub(crate) fn attach_backend_tls_policies(
        &mut self,
        class: &str,
        statuses: &mut Vec<ResourceStatus>,
    ) {
        let resources = self.resources;
        for gw in &resources.gateways {
            if gw.spec.gateway_class_name != class {
                continue;
            }
            let Some(r) = gw
                .spec
                .tls
                .as_ref()
                .and_then(|t| t.backend.as_ref())
                .and_then(|b| b.client_certificate_ref.as_ref())
            else {
                continue;
            };
            let ns = ns_of(&gw.metadata);
            let key = (ns.to_owned(), name_of(&gw.metadata).to_owned());
            let resolved = super::listener::tls_secret(
                self,
                "Gateway",
                ns,
                r.group.as_deref(),
                r.kind.as_deref(),
                r.namespace.as_deref(),
                &r.name,
            )
            .and_then(|cert| match cert.problem() {
                Some(problem) => Err((reason::INVALID_CERTIFICATE_REF, problem.to_owned())),
                None => Ok(cert),
            })
            .and_then(|cert| {
                TlsSettings::webpki_roots()
                    .and_then(|s| s.client_certificate(cert.cert_pem(), cert.key_pem()))
                    .map(|_| cert)
                    .map_err(|e| (reason::INVALID_CERTIFICATE_REF, e.reason().to_owned()))
            });
            match resolved {
                Ok(cert) => {
                    let secret = (
                        cert.secret().namespace().unwrap_or_default().to_owned(),
                        cert.secret().name().to_owned(),
                    );
                    self.tls.clients.insert(secret, cert.clone());
                    self.tls.gateway_clients.insert(key, cert);
                }
                Err((r, message)) => {
                    let r = if r == reason::INVALID_CERTIFICATE_REF {
                        INVALID_CLIENT_CERTIFICATE_REF
                    } else {
                        r
                    };
                    self.errors.push(ConfigError::new(
                        "spec.tls.backend.clientCertificateRef",
                        format!("Gateway {}/{}: {message}", key.0, key.1),
                    ));
                    self.tls.gateway_problems.insert(key, (r, message));
                }
            }
        }
        if resources.backend_tls_policies.is_empty() {
            return;
        }
        let ancestors = self.service_gateways(class);
        for p in by_age(&resources.backend_tls_policies, |p| &p.metadata) {
            statuses.push(self.attach_backend_tls_policy(p, &ancestors));
        }
    }

    /// The Gateways of class `class` whose HTTPRoutes and GRPCRoutes reference each
    /// Service (namespace, name).
    fn service_gateways(&self, class: &str) -> HashMap<(String, String), Vec<AncestorRef>> {
        let resources = self.resources;
        let served = |ns: &str, name: &str| {
            resources.gateways.iter().any(|g| {
                g.spec.gateway_class_name == class
                    && ns_of(&g.metadata) == ns
                    && name_of(&g.metadata) == name
            })
        };
        let mut out: HashMap<(String, String), Vec<AncestorRef>> = HashMap::new();
        let mut add = |route_ns: &str, parents: Vec<Named<'_>>, refs: Vec<Named<'_>>| {
            let gateways: Vec<AncestorRef> = parents
                .into_iter()
                .filter(|(group, kind, _, _)| {
                    group.unwrap_or(crate::types::GATEWAY_GROUP) == crate::types::GATEWAY_GROUP
                        && kind.unwrap_or("Gateway") == "Gateway"
                })
                .map(|(_, _, ns, name)| (ns.unwrap_or(route_ns), name))
                .filter(|(ns, name)| served(ns, name))
                .map(|(ns, name)| gateway_ancestor(ns, name, None))
                .collect();
            if gateways.is_empty() {
                return;
            }
            for (group, kind, ns, name) in refs {
                if !group.unwrap_or("").is_empty() || kind.unwrap_or("Service") != "Service" {
                    continue;
                }
                let entry = out
                    .entry((ns.unwrap_or(route_ns).to_owned(), name.to_owned()))
                    .or_default();
                for g in &gateways {
                    if !entry.contains(g) {
                        entry.push(g.clone());
                    }
                }
            }
        };
        macro_rules! scan {
            ($routes:expr) => {
                for r in $routes {
                    let parents = r
                        .spec
                        .parent_refs
                        .iter()
                        .flatten()
                        .map(|p| {
                            (
                                p.group.as_deref(),
                                p.kind.as_deref(),
                                p.namespace.as_deref(),
                                &*p.name,
                            )
                        })
                        .collect();
                    let refs = r
                        .spec
                        .rules
                        .iter()
                        .flatten()
                        .flat_map(|rule| rule.backend_refs.iter().flatten())
                        .map(|b| {
                            (
                                b.group.as_deref(),
                                b.kind.as_deref(),
                                b.namespace.as_deref(),
                                &*b.name,
                            )
                        })
                        .collect();
                    add(ns_of(&r.metadata), parents, refs);
                }
            };
        }
        scan!(&resources.http_routes);
        scan!(&resources.grpc_routes);
        out
    }

    /// Checks one policy and attaches it to its targets; returns its status.
    fn attach_backend_tls_policy(
        &mut self,
        p: &BackendTlsPolicy,
        ancestors: &HashMap<(String, String), Vec<AncestorRef>>,
    ) -> ResourceStatus {
        let ns = ns_of(&p.metadata);
        let name = name_of(&p.metadata);
        let generation = p.metadata.generation;
        let resource = ResourceRef::new("BackendTLSPolicy", Some(ns), name);
        let checked = self.check_backend_tls_policy(p, &resource);
        if let Some((_, message)) = checked.refused.as_ref().or(checked.unresolved.as_ref()) {
            self.errors.push(ConfigError::new(
                "spec.validation",
                format!("{resource}: {message}"),
            ));
        }
        let resolved = match &checked.unresolved {
            None => Condition::new(
                reason::RESOLVED_REFS,
                true,
                reason::RESOLVED_REFS,
                "",
                generation,
            ),
            Some((r, m)) => Condition::new(reason::RESOLVED_REFS, false, r, m.clone(), generation),
        };
        // Per target: where it is reported, and why it is not applied there.
        let mut reports: Vec<(AncestorRef, Option<(&'static str, String)>)> = Vec::new();
        let mut report = |at: Vec<AncestorRef>, failure: Option<(&'static str, String)>| {
            for a in at {
                match reports.iter_mut().find(|(r, _)| *r == a) {
                    Some((_, f @ None)) => *f = failure.clone(),
                    Some(_) => {}
                    None => reports.push((a, failure.clone())),
                }
            }
        };
        let mut attached = 0usize;
        for t in &p.spec.target_refs {
            let service_key = (ns.to_owned(), t.name.clone());
            let at = ancestors
                .get(&service_key)
                .cloned()
                .unwrap_or_else(|| vec![service_ancestor(ns, &t.name)]);
            if !t.group.is_empty() || t.kind != "Service" {
                report(
                    vec![AncestorRef {
                        group: "",
                        kind: t.kind.clone(),
                        namespace: ns.to_owned(),
                        name: t.name.clone(),
                        section_name: t.section_name.clone(),
                    }],
                    Some((
                        reason::TARGET_NOT_FOUND,
                        format!(
                            "target kind {}/{} is not supported (only Services)",
                            t.group, t.kind
                        ),
                    )),
                );
                continue;
            }
            let Some(service) = self.service(ns, &t.name) else {
                report(
                    at,
                    Some((
                        reason::TARGET_NOT_FOUND,
                        format!("Service {ns}/{} not found", t.name),
                    )),
                );
                continue;
            };
            let section = t.section_name.as_deref().filter(|s| !s.is_empty());
            if let Some(section) = section
                && !has_port_named(service, section)
            {
                report(
                    at,
                    Some((
                        reason::TARGET_NOT_FOUND,
                        format!("Service {ns}/{} has no port named {section}", t.name),
                    )),
                );
                continue;
            }
            let entry = self.tls.services.entry(service_key).or_default();
            let slot = match section {
                Some(s) => entry.ports.get(s),
                None => entry.whole.as_ref(),
            };
            if let Some((older, _)) = slot
                && older != name
            {
                report(
                    at,
                    Some((
                        reason::CONFLICTED_POLICY,
                        format!(
                            "Service {ns}/{}{} already has the older BackendTLSPolicy {ns}/{older}",
                            t.name,
                            section.map(|s| format!(" port {s}")).unwrap_or_default()
                        ),
                    )),
                );
                continue;
            }
            let value = (name.to_owned(), checked.tls.clone());
            match section {
                Some(s) => {
                    entry.ports.insert(s.to_owned(), value);
                }
                None => entry.whole = Some(value),
            }
            attached += 1;
            report(at, checked.refused.clone());
        }
        let mut status = ResourceStatus::new(resource, generation);
        let accepted = |failure: &Option<(&'static str, String)>| match failure {
            None => Condition::new(reason::ACCEPTED, true, reason::ACCEPTED, "", generation),
            Some((r, m)) => Condition::new(reason::ACCEPTED, false, r, m.clone(), generation),
        };
        let overall = match &checked.refused {
            Some(f) => Some(f.clone()),
            None if attached == 0 => reports
                .iter()
                .find_map(|(_, f)| f.clone())
                .or_else(|| Some((reason::TARGET_NOT_FOUND, "no target".to_owned()))),
            None => None,
        };
        status.push_condition(accepted(&overall));
        status.push_condition(resolved.clone());
        for (ancestor, failure) in reports {
            status.push_ancestor(AncestorStatus::new(
                ancestor,
                vec![accepted(&failure), resolved.clone()],
            ));
        }
        status
    }

    /// Validates a policy's fields and resolves its CA certificate references.
    fn check_backend_tls_policy(&self, p: &BackendTlsPolicy, resource: &ResourceRef) -> Checked {
        let ns = ns_of(&p.metadata);
        let v = &p.spec.validation;
        let invalid = |message: String| Checked {
            tls: Err(Arc::from(format!("{resource} is not accepted: {message}"))),
            refused: Some((reason::INVALID, message)),
            unresolved: None,
        };
        let refs = v.ca_certificate_refs.as_deref().unwrap_or_default();
        let well_known = v
            .well_known_ca_certificates
            .as_deref()
            .filter(|w| !w.is_empty());
        if !refs.is_empty() && well_known.is_some() {
            return invalid(
                "caCertificateRefs and wellKnownCACertificates must not both be set".to_owned(),
            );
        }
        // A wildcard is no server name; other malformed names fail when the settings
        // are built below.
        if v.hostname.is_empty() || v.hostname.contains('*') {
            return invalid(format!("hostname {:?} is not a valid DNS name", v.hostname));
        }
        let mut sans = Vec::new();
        for (i, san) in v.subject_alt_names.iter().flatten().enumerate() {
            use crate::types::BackendTlsPolicyValidationSubjectAltNamesType as Type;
            match (&san.r#type, san.hostname.as_deref(), san.uri.as_deref()) {
                (Type::Hostname, Some(h), _) if !h.is_empty() => {
                    sans.push(SubjectAltName::Dns(h.to_owned()));
                }
                (Type::Uri, _, Some(u)) if u.contains(':') => {
                    sans.push(SubjectAltName::Uri(u.to_owned()));
                }
                _ => {
                    return invalid(format!(
                        "subjectAltNames[{i}]: a {:?} entry needs its value",
                        san.r#type
                    ));
                }
            }
        }
        let roots = match well_known {
            Some("System") => TlsRoots::System,
            Some(other) => {
                return invalid(format!(
                    "wellKnownCACertificates {other:?} is not supported (only System)"
                ));
            }
            None if refs.is_empty() => {
                return invalid(
                    "one of caCertificateRefs and wellKnownCACertificates must be set".to_owned(),
                );
            }
            None => {
                let mut bundle: Vec<u8> = Vec::new();
                let mut problems: Vec<(&'static str, String)> = Vec::new();
                for r in refs {
                    match self.ca_bundle(ns, &r.group, &r.kind, &r.name) {
                        Ok(pem) => {
                            bundle.extend_from_slice(&pem);
                            bundle.push(b'\n');
                        }
                        Err(problem) => problems.push(problem),
                    }
                }
                if let Some((first, _)) = problems.first() {
                    let message = problems
                        .iter()
                        .map(|(_, m)| m.as_str())
                        .collect::<Vec<_>>()
                        .join("; ");
                    let all = problems.len() == refs.len();
                    return Checked {
                        tls: Err(Arc::from(format!("{resource}: {message}"))),
                        refused: all.then(|| (NO_VALID_CA_CERTIFICATE, message.clone())),
                        unresolved: Some((first, message)),
                    };
                }
                TlsRoots::Pem(Arc::from(bundle))
            }
        };
        let settings = match &roots {
            TlsRoots::Pem(pem) => TlsSettings::from_ca_pem(pem),
            TlsRoots::System => TlsSettings::system_roots(),
        }
        .and_then(|s| s.server_name(&v.hostname))
        .and_then(|s| s.subject_alt_names(sans.iter().cloned()));
        let settings = match settings {
            Ok(settings) => settings,
            Err(e) => return invalid(format!("{}: {}", e.field(), e.reason())),
        };
        Checked {
            tls: Ok(Arc::new(UpstreamTls {
                policy: resource.clone(),
                roots,
                hostname: v.hostname.clone(),
                subject_alt_names: sans,
                client_certificate: None,
                settings,
            })),
            refused: None,
            unresolved: None,
        }
    }

    /// The PEM under `ca.crt` of ConfigMap or Secret `ns/name`, checked to hold CA
    /// certificates; or the `ResolvedRefs` reason and message.
    fn ca_bundle(
        &self,
        ns: &str,
        group: &str,
        kind: &str,
        name: &str,
    ) -> Result<Vec<u8>, (&'static str, String)> {
        let bad = |m: String| (INVALID_CA_CERTIFICATE_REF, m);
        if !group.is_empty() || !matches!(kind, "ConfigMap" | "Secret") {
            return Err((
                reason::INVALID_KIND,
                format!(
                    "caCertificateRef kind {group}/{kind} is not supported (only ConfigMaps and Secrets)"
                ),
            ));
        }
        let pem = self.ca_pem(ns, kind, name).map_err(bad)?;
        let Some(pem) = pem.filter(|p| !p.iter().all(u8::is_ascii_whitespace)) else {
            return Err(bad(format!("{kind} {ns}/{name} has no ca.crt")));
        };
        TlsSettings::from_ca_pem(&pem)
            .map_err(|e| bad(format!("{kind} {ns}/{name}: ca.crt: {}", e.reason())))?;
        Ok(pem)
    }
}

/// A reference as written: group, kind, namespace, name.
type Named<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, &'a str);

fn has_port_named(service: &CompactService, section: &str) -> bool {
    service.ports().iter().any(|p| p.name() == Some(section))
}

/// `policy` with `client` as its client certificate. The Gateway's certificate was
/// checked when it was resolved; should it fail anyway, none is presented (a backend
/// that requires one then refuses: nothing is ever sent with weaker TLS than asked).
pub(crate) fn with_client(policy: &UpstreamTls, client: Option<&Certificate>) -> UpstreamTls {
    let mut tls = policy.clone();
    if let Some(cert) = client
        && let Ok(settings) = tls
            .settings
            .clone()
            .client_certificate(cert.cert_pem(), cert.key_pem())
    {
        tls.settings = settings;
        tls.client_certificate = Some(cert.clone());
    }
    tls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_append_the_secret() {
        assert_eq!(client_backend_name("ns/svc:443", None), "ns/svc:443");
        let c = ("certs".to_owned(), "client".to_owned());
        assert_eq!(
            client_backend_name("ns/svc:443", Some(&c)),
            "ns/svc:443@client=certs/client"
        );
    }

    #[test]
    fn app_protocols_over_tls() {
        use super::super::AppProtocol;
        assert_eq!(tls_app_protocol(None, false), Ok(AppProtocol::Https));
        assert_eq!(tls_app_protocol(None, true), Ok(AppProtocol::H2));
        assert_eq!(
            tls_app_protocol(Some("HTTPS"), false),
            Ok(AppProtocol::Https)
        );
        assert_eq!(
            tls_app_protocol(Some("kubernetes.io/wss"), false),
            Ok(AppProtocol::Https)
        );
        assert_eq!(tls_app_protocol(Some("grpc"), false), Ok(AppProtocol::H2));
        assert_eq!(
            tls_app_protocol(Some("example.com/x"), false),
            Err("example.com/x")
        );
    }

    #[test]
    fn mirrors_and_backends_are_renamed_for_a_client() {
        use gatekit_core::route::{BackendRef, Filter, Mirror, Rule};
        let rule = Rule::default()
            .with_backend(BackendRef::new("ns/tls:443", 1))
            .with_backend(BackendRef::new("ns/plain:80", 1))
            .with_filter(Filter::RequestMirror(Mirror::new("ns/tls:443")));
        let mut rules = vec![rule];
        let c = ("ns".to_owned(), "client".to_owned());
        rename_backends(&mut rules, &["ns/tls:443".to_owned()], &c);
        assert_eq!(rules[0].backends[0].name, "ns/tls:443@client=ns/client");
        assert_eq!(rules[0].backends[1].name, "ns/plain:80");
        assert!(
            matches!(&rules[0].filters[0], Filter::RequestMirror(m) if m.backend == "ns/tls:443@client=ns/client")
        );
    }
}
