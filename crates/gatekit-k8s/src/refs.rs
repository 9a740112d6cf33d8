//! The Secrets and ConfigMaps the configuration references, by name.
//!
//! In a cluster the provider watches only these objects (see
//! [`provider`](crate::provider)): [`references`] lists every Secret and ConfigMap a
//! configuration object names, with namespaces defaulted as translation defaults them.
//! Which references are *permitted* (ReferenceGrants, a policy that refuses another
//! namespace) is translation's business: watching a named object that translation then
//! refuses is harmless, so every cross-namespace reference is listed, but nothing beyond
//! what a reference names. A reference to another group or kind (not a core Secret or
//! ConfigMap) names nothing watched.
//!
//! Where references come from is one table, [`SOURCES`]: a kind (as in manifests) and
//! the function that lists its objects' references. A new kind of reference (an auth
//! policy's API key Secret) is one line in that kind's function; a new referring kind
//! is one function and one line in the table. The provider recomputes the set after a
//! change of any kind in the table.

use std::collections::BTreeSet;

use crate::manifest::ResourceSet;
use crate::translate::ns_of;

/// The kinds of object the configuration references by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum RefKind {
    /// A core `Secret` (any type: TLS pairs, Opaque CA bundles).
    Secret,
    /// A core `ConfigMap`.
    ConfigMap,
}

impl RefKind {
    /// The kind as in manifests.
    #[cfg(test)]
    fn name(self) -> &'static str {
        match self {
            RefKind::Secret => "Secret",
            RefKind::ConfigMap => "ConfigMap",
        }
    }

    /// The kind a reference of `group` and `kind` names, if it is one of these.
    fn of(group: Option<&str>, kind: &str) -> Option<Self> {
        if !group.unwrap_or("").is_empty() {
            return None;
        }
        match kind {
            "Secret" => Some(RefKind::Secret),
            "ConfigMap" => Some(RefKind::ConfigMap),
            _ => None,
        }
    }
}

/// One referenced object: kind, namespace, name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Reference {
    pub(crate) kind: RefKind,
    pub(crate) namespace: String,
    pub(crate) name: String,
}

/// The referenced objects, ordered by kind, namespace, name (so each (kind, namespace)
/// is one range).
pub(crate) type References = BTreeSet<Reference>;

/// Lists the references of one kind's objects in a [`ResourceSet`].
type Source = fn(&ResourceSet, &mut Refs<'_>);

/// Every kind whose objects reference Secrets or ConfigMaps (as in manifests), with the
/// function that lists them.
pub(crate) const SOURCES: &[(&str, Source)] = &[
    ("Gateway", gateways),
    ("ListenerSet", listener_sets),
    ("BackendTLSPolicy", backend_tls_policies),
    ("ClientTrafficPolicy", client_traffic_policies),
    ("SecurityPolicy", security_policies),
    ("SecurityOverride", security_overrides),
];

/// Every Secret and ConfigMap the objects of `resources` reference (see the
/// [module docs](self)).
pub(crate) fn references(resources: &ResourceSet) -> References {
    let mut out = References::new();
    for (_, source) in SOURCES {
        source(resources, &mut Refs(&mut out));
    }
    out
}

/// Whether objects of `kind` (as in manifests) can reference Secrets or ConfigMaps.
pub(crate) fn is_referrer(kind: &str) -> bool {
    SOURCES.iter().any(|(k, _)| *k == kind)
}

/// The set a [`Source`] adds to.
pub(crate) struct Refs<'a>(&'a mut References);

impl Refs<'_> {
    /// Adds the object a reference names: `group`/`kind` (`default_kind` when unset),
    /// in `namespace`, or the referring object's namespace `home` when unset.
    fn add(
        &mut self,
        group: Option<&str>,
        kind: Option<&str>,
        default_kind: &str,
        namespace: Option<&str>,
        home: &str,
        name: &str,
    ) {
        let Some(kind) = RefKind::of(group, kind.unwrap_or(default_kind)) else {
            return;
        };
        if name.is_empty() {
            return;
        }
        self.0.insert(Reference {
            kind,
            namespace: namespace
                .filter(|n| !n.is_empty())
                .unwrap_or(home)
                .to_owned(),
            name: name.to_owned(),
        });
    }
}

/// Gateways: listeners' `tls.certificateRefs`, `spec.tls.frontend` CA refs (default and
/// per port), `spec.tls.backend.clientCertificateRef`.
fn gateways(resources: &ResourceSet, out: &mut Refs<'_>) {
    for gw in &resources.gateways {
        let home = ns_of(&gw.metadata);
        for l in &gw.spec.listeners {
            for r in l
                .tls
                .iter()
                .flat_map(|t| t.certificate_refs.iter().flatten())
            {
                let (group, kind) = (r.group.as_deref(), r.kind.as_deref());
                out.add(group, kind, "Secret", r.namespace.as_deref(), home, &r.name);
            }
        }
        let Some(tls) = &gw.spec.tls else { continue };
        if let Some(frontend) = &tls.frontend {
            for r in frontend
                .default
                .validation
                .iter()
                .flat_map(|v| &v.ca_certificate_refs)
            {
                let ns = r.namespace.as_deref();
                out.add(Some(&r.group), Some(&r.kind), "", ns, home, &r.name);
            }
            let per_port = frontend.per_port.iter().flatten();
            for v in per_port.filter_map(|p| p.tls.validation.as_ref()) {
                for r in &v.ca_certificate_refs {
                    let ns = r.namespace.as_deref();
                    out.add(Some(&r.group), Some(&r.kind), "", ns, home, &r.name);
                }
            }
        }
        if let Some(r) = tls
            .backend
            .as_ref()
            .and_then(|b| b.client_certificate_ref.as_ref())
        {
            let (group, kind) = (r.group.as_deref(), r.kind.as_deref());
            out.add(group, kind, "Secret", r.namespace.as_deref(), home, &r.name);
        }
    }
}

/// ListenerSets: their listeners' `tls.certificateRefs` (relative to the ListenerSet's
/// namespace, GEP-1713).
fn listener_sets(resources: &ResourceSet, out: &mut Refs<'_>) {
    for set in &resources.listener_sets {
        let home = ns_of(&set.metadata);
        for l in &set.spec.listeners {
            for r in l
                .tls
                .iter()
                .flat_map(|t| t.certificate_refs.iter().flatten())
            {
                let (group, kind) = (r.group.as_deref(), r.kind.as_deref());
                out.add(group, kind, "Secret", r.namespace.as_deref(), home, &r.name);
            }
        }
    }
}

/// BackendTLSPolicies: `spec.validation.caCertificateRefs` (local references).
fn backend_tls_policies(resources: &ResourceSet, out: &mut Refs<'_>) {
    for p in &resources.backend_tls_policies {
        let home = ns_of(&p.metadata);
        for r in p.spec.validation.ca_certificate_refs.iter().flatten() {
            out.add(Some(&r.group), Some(&r.kind), "", None, home, &r.name);
        }
    }
}

/// Envoy Gateway's ClientTrafficPolicies: `spec.tls.clientValidation.caCertificateRefs`
/// (kind `Secret` by default).
fn client_traffic_policies(resources: &ResourceSet, out: &mut Refs<'_>) {
    for p in &resources.client_traffic_policies {
        let home = ns_of(&p.metadata);
        let validation = p
            .spec
            .tls
            .as_ref()
            .and_then(|t| t.client_validation.as_ref());
        for r in validation.iter().flat_map(|v| &v.ca_certificate_refs) {
            let (group, kind) = (r.group.as_deref(), r.kind.as_deref());
            out.add(group, kind, "Secret", r.namespace.as_deref(), home, &r.name);
        }
    }
}

/// The Secrets and ConfigMaps of access mechanisms: `apiKeyAuth.credentialRefs`,
/// `basicAuth.users`, `oidc.clientSecret`, `oidc.clientIDRef` (Secrets),
/// `jwt.providers[].localJWKS.valueRef` (a ConfigMap in the policy's namespace).
fn access(m: &crate::types::security::AccessMechanisms, home: &str, out: &mut Refs<'_>) {
    let secrets = m
        .api_key_auth
        .iter()
        .flat_map(|a| &a.credential_refs)
        .chain(m.basic_auth.iter().map(|b| &b.users))
        .chain(
            m.oidc
                .iter()
                .flat_map(|o| o.client_secret.iter().chain(o.client_id_ref.iter())),
        );
    for r in secrets {
        let (group, kind) = (r.group.as_deref(), r.kind.as_deref());
        out.add(group, kind, "Secret", r.namespace.as_deref(), home, &r.name);
    }
    let jwks = m
        .jwt
        .iter()
        .flat_map(|j| &j.providers)
        .filter_map(|p| p.local_jwks.as_ref()?.value_ref.as_ref());
    for r in jwks {
        out.add(
            r.group.as_deref(),
            Some(&r.kind),
            "ConfigMap",
            None,
            home,
            &r.name,
        );
    }
}

/// Envoy Gateway's SecurityPolicies: see [`access`].
fn security_policies(resources: &ResourceSet, out: &mut Refs<'_>) {
    for p in &resources.security_policies {
        access(&p.spec.access, ns_of(&p.metadata), out);
    }
}

/// gatekit's SecurityOverrides: see [`access`].
fn security_overrides(resources: &ResourceSet, out: &mut Refs<'_>) {
    for p in &resources.security_overrides {
        access(&p.spec.access, ns_of(&p.metadata), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(yaml: &str) -> ResourceSet {
        let (set, warnings) = ResourceSet::from_documents([("refs.yaml", yaml)]).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        set
    }

    fn names(refs: &References) -> Vec<String> {
        refs.iter()
            .map(|r| format!("{} {}/{}", r.kind.name(), r.namespace, r.name))
            .collect()
    }

    #[test]
    fn every_kind_of_reference_is_listed_with_its_namespace() {
        let refs = references(&set(r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: infra }
spec:
  gatewayClassName: gatekit
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    tls:
      certificateRefs:
      - { name: own }
      - { name: shared, namespace: certs }
      - { group: example.com, kind: Vault, name: elsewhere }
  tls:
    frontend:
      default:
        validation:
          caCertificateRefs: [{ group: "", kind: ConfigMap, name: client-ca }]
      perPort:
      - port: 8443
        tls:
          validation:
            caCertificateRefs: [{ group: "", kind: Secret, name: port-ca, namespace: cas }]
    backend:
      clientCertificateRef: { name: client-pair }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: defaulted }
spec:
  gatewayClassName: gatekit
  listeners:
  - { name: https, port: 443, protocol: HTTPS, tls: { certificateRefs: [{ kind: Secret, name: pair }] } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: { name: extra, namespace: team }
spec:
  parentRef: { name: gw, namespace: infra }
  listeners:
  - { name: more, port: 443, protocol: HTTPS, hostname: a.example, tls: { certificateRefs: [{ name: team-pair }] } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: { name: btls, namespace: shop }
spec:
  targetRefs: [{ group: "", kind: Service, name: api }]
  validation:
    hostname: api.shop
    caCertificateRefs:
    - { group: "", kind: Secret, name: opaque-ca }
    - { group: "", kind: ConfigMap, name: api-ca }
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: ClientTrafficPolicy
metadata: { name: ctp, namespace: infra }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: gw }]
  tls:
    clientValidation:
      caCertificateRefs: [{ name: ctp-ca }, { kind: ConfigMap, name: ctp-cm, namespace: other }]
"#));
        assert_eq!(
            names(&refs),
            [
                "Secret cas/port-ca",
                "Secret certs/shared",
                "Secret default/pair",
                "Secret infra/client-pair",
                "Secret infra/ctp-ca",
                "Secret infra/own",
                "Secret shop/opaque-ca",
                "Secret team/team-pair",
                "ConfigMap infra/client-ca",
                "ConfigMap other/ctp-cm",
                "ConfigMap shop/api-ca",
            ]
        );
    }

    #[test]
    fn objects_that_reference_nothing_name_nothing() {
        let refs = references(&set(r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw }
spec:
  gatewayClassName: gatekit
  listeners: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: v1
kind: Secret
metadata: { name: unreferenced }
type: kubernetes.io/tls
stringData: { tls.crt: x, tls.key: y }
"#));
        assert!(refs.is_empty(), "{refs:?}");
    }

    #[test]
    fn security_policies_and_overrides_name_their_secrets_and_config_maps() {
        let refs = references(&set(r#"
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata: { name: sp, namespace: apps }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: r }]
  apiKeyAuth: { credentialRefs: [{ name: keys }], extractFrom: [{ headers: [x-key] }] }
  jwt: { providers: [{ name: p, localJWKS: { type: ValueRef, valueRef: { kind: ConfigMap, name: jwks } } }] }
---
apiVersion: gatekit.io/v1alpha1
kind: SecurityOverride
metadata: { name: so, namespace: infra }
spec:
  targetRefs: [{ kind: Gateway, name: gw }]
  basicAuth: { users: { name: htpasswd } }
  oidc:
    provider: { issuer: https://idp.test }
    clientIDRef: { name: oidc-id }
    clientSecret: { name: oidc-secret }
"#));
        assert_eq!(
            names(&refs),
            [
                "Secret apps/keys",
                "Secret infra/htpasswd",
                "Secret infra/oidc-id",
                "Secret infra/oidc-secret",
                "ConfigMap apps/jwks",
            ]
        );
        assert!(is_referrer("SecurityPolicy") && is_referrer("SecurityOverride"));
    }

    #[test]
    fn access_references_to_other_namespaces_are_listed_in_those_namespaces() {
        // Whether a ReferenceGrant permits them is translation's business; the objects
        // are watched either way.
        let refs = references(&set(r#"
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata: { name: sp, namespace: apps }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: r }]
  apiKeyAuth: { credentialRefs: [{ name: keys, namespace: vault }, { name: own }], extractFrom: [{ headers: [x-key] }] }
  basicAuth: { users: { name: htpasswd, namespace: vault } }
"#));
        assert_eq!(
            names(&refs),
            [
                "Secret apps/own",
                "Secret vault/htpasswd",
                "Secret vault/keys",
            ]
        );
    }

    #[test]
    fn the_table_names_the_referring_kinds() {
        assert!(is_referrer("Gateway") && is_referrer("BackendTLSPolicy"));
        assert!(!is_referrer("HTTPRoute") && !is_referrer("Secret"));
    }
}
