//! Envoy Gateway `ClientTrafficPolicy` attachment: each policy read into listener TLS
//! settings, PROXY protocol, the stream idle timeout, the connection limit and the
//! client address detection (see
//! [`crate::types::ctp`] for the fields), attached to the listeners of its target
//! Gateways, with its status.
//!
//! Precedence: a policy naming a listener (`sectionName`) applies to it instead of one
//! naming the whole Gateway; a Gateway-wide policy also covers the listeners
//! ListenerSets add to the Gateway. Of two policies naming the same target, the older
//! applies and the newer is `Conflicted` there. Client certificate validation from the
//! Gateway's own `spec.tls.frontend` (the Gateway API's) wins over a policy's
//! `tls.clientValidation` on the same listener.
//!
//! A refused policy (a value gatekit cannot use, a field gatekit does not implement) is
//! not applied: its listeners keep gatekit's defaults, which are secure (TLS 1.2+,
//! rustls' suites). One that asked for client certificates is different: serving its
//! listeners without the validation would let in every client it meant to keep out, so
//! they are not served (`Programmed=False`, naming the policy) until it is fixed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gatekit_core::ConfigError;
use gatekit_core::client_ip::ClientIpDetection;
use gatekit_core::proxy::{CertDetails, ForwardClientCert, ForwardClientCertMode};
use gatekit_core::ratelimit::Cidr;
use gatekit_core::tls::{ClientCertMode, ClientValidation, ListenerTls, TlsVersion};

use super::backend::{Context, name_of, ns_of};
use super::frontend::{CaRef, ca_bundle};
use super::listener::Listener;
use super::policy::{Attachment, by_age, gateway_ancestor, invalid, refused};
use crate::status::{Condition, ResourceRef, ResourceStatus, reason};
use crate::types::ctp::{ClientTrafficPolicySpec, CtpClientIpDetection, CtpTls};

/// What a policy sets on a listener.
#[derive(Debug)]
struct Values {
    tls: ListenerTls,
    proxy_protocol: bool,
    /// `timeout.tcp.idleTimeout`.
    idle_timeout: Option<Duration>,
    /// `connection.connectionLimit.value`.
    connection_limit: Option<usize>,
    /// `clientIPDetection`.
    client_ip: Option<Arc<ClientIpDetection>>,
}

/// A policy target: (namespace, Gateway, listener).
type Key = (String, String, Option<String>);

/// Reads every ClientTrafficPolicy, attaches it to its targets' `listeners` and pushes
/// its status; problems go to `errors`.
pub(crate) fn attach(
    cx: &Context<'_>,
    listeners: &mut [Listener<'_>],
    statuses: &mut Vec<ResourceStatus>,
    errors: &mut Vec<ConfigError>,
) {
    let resources = cx.resources;
    if resources.client_traffic_policies.is_empty() {
        return;
    }
    let mut applied: HashMap<Key, (String, Arc<Values>)> = HashMap::new();
    // Targets of refused policies that asked for client certificates.
    let mut withheld: HashMap<Key, String> = HashMap::new();
    for p in by_age(&resources.client_traffic_policies, |p| &p.metadata) {
        let ns = ns_of(&p.metadata);
        let name = name_of(&p.metadata);
        let owner = format!("{ns}/{name}");
        let generation = p.metadata.generation;
        let resource = ResourceRef::new("ClientTrafficPolicy", Some(ns), name);
        let ancestors = || {
            p.spec
                .targets()
                .map(|t| gateway_ancestor(ns, &t.name, t.section_name.as_deref()))
                .collect::<Vec<_>>()
        };
        let wants_client_certs = p
            .spec
            .tls
            .as_ref()
            .is_some_and(|t| t.client_validation.is_some());
        let withhold = |withheld: &mut HashMap<Key, String>| {
            if wants_client_certs {
                for t in p.spec.targets() {
                    withheld.insert(
                        (ns.to_owned(), t.name.clone(), t.section_name.clone()),
                        format!("ClientTrafficPolicy {owner}"),
                    );
                }
            }
        };
        let unimplemented = unimplemented(&p.spec);
        if !unimplemented.is_empty() {
            let message = format!("not implemented by gatekit: {}", unimplemented.join(", "));
            errors.push(ConfigError::new(
                "spec",
                format!("ClientTrafficPolicy {owner}: {message}"),
            ));
            statuses.push(refused(
                resource,
                generation,
                ancestors(),
                reason::UNSUPPORTED,
                message,
            ));
            withhold(&mut withheld);
            continue;
        }
        let values = match read(cx, ns, &p.spec) {
            Ok(v) => Arc::new(v),
            Err(problems) => {
                statuses.push(invalid(resource, generation, ancestors(), problems, errors));
                withhold(&mut withheld);
                continue;
            }
        };
        let mut attachment = Attachment::new();
        if p.spec.targets().next().is_none() {
            attachment.not_found_all(Vec::new(), "no targetRefs".to_owned());
        }
        for t in p.spec.targets() {
            let section = t.section_name.as_deref();
            let ancestor = gateway_ancestor(ns, &t.name, section);
            let target = match section {
                Some(s) => format!("{} {ns}/{} section {s}", t.kind, t.name),
                None => format!("{} {ns}/{}", t.kind, t.name),
            };
            let group = t.group.as_deref().unwrap_or(crate::types::GATEWAY_GROUP);
            if group != crate::types::GATEWAY_GROUP || t.kind != "Gateway" {
                attachment.not_found_all(
                    vec![ancestor],
                    format!(
                        "{target}: only Gateways (gateway.networking.k8s.io) are served targets"
                    ),
                );
                continue;
            }
            let exists = super::frontend::gateway(cx, ns, &t.name).is_some_and(|g| {
                section.is_none_or(|s| g.spec.listeners.iter().any(|l| l.name == s))
            });
            if !exists {
                attachment.not_found_all(vec![ancestor], format!("{target} not found"));
                continue;
            }
            let key: Key = (ns.to_owned(), t.name.clone(), t.section_name.clone());
            if let Some((older, _)) = applied.get(&key) {
                attachment.conflicted_all(
                    vec![ancestor],
                    format!(
                        "{target}: not applied, the older ClientTrafficPolicy {older} targets it"
                    ),
                );
                continue;
            }
            applied.insert(key, (owner.clone(), values.clone()));
            attachment.attached(ancestor);
        }
        statuses.push(attachment.status(resource, generation));
    }
    for l in listeners.iter_mut() {
        let own = (l.owner.kind == "Gateway").then(|| {
            (
                l.gateway_ns.to_owned(),
                l.gateway_name.to_owned(),
                Some(l.name.to_owned()),
            )
        });
        let whole = (l.gateway_ns.to_owned(), l.gateway_name.to_owned(), None);
        if let Some(values) = own
            .as_ref()
            .and_then(|k| applied.get(k))
            .or_else(|| applied.get(&whole))
            .map(|(_, v)| v)
        {
            l.tls_settings = Some(Arc::new(values.tls.clone()));
            l.proxy_protocol = values.proxy_protocol;
            l.idle_timeout = values.idle_timeout;
            l.connection_limit = values.connection_limit;
            l.client_ip.clone_from(&values.client_ip);
            continue;
        }
        let refused_by = own
            .as_ref()
            .and_then(|k| withheld.get(k))
            .or_else(|| withheld.get(&whole));
        if let Some(policy) = refused_by
            && l.programmed
        {
            l.programmed = false;
            let message = format!(
                "{policy} asks for client certificates and is not accepted: the listener is not served without them"
            );
            errors.push(ConfigError::new(
                format!("listeners[{}]", l.name),
                format!("Gateway {}/{}: {message}", l.gateway_ns, l.gateway_name),
            ));
            if let Some(status) = statuses
                .get_mut(l.status_index)
                .and_then(|s| s.listeners_mut().get_mut(l.listener_index))
            {
                status.replace_condition(Condition::new(
                    reason::PROGRAMMED,
                    false,
                    reason::INVALID,
                    message,
                    None,
                ));
            }
        }
    }
}

/// The effective settings of a listener: the policy's, with the Gateway's frontend
/// validation (which wins) when it has one.
pub(crate) fn effective(
    settings: Option<Arc<ListenerTls>>,
    validation: Option<ClientValidation>,
) -> Option<Arc<ListenerTls>> {
    match validation {
        None => settings,
        Some(v) => {
            let base = settings.map(|s| (*s).clone()).unwrap_or_default();
            Some(Arc::new(base.client_validation(Some(v))))
        }
    }
}

/// The spec fields gatekit does not implement, by path.
fn unimplemented(spec: &ClientTrafficPolicySpec) -> Vec<String> {
    let mut out: Vec<String> = spec.other.keys().cloned().collect();
    if let Some(tls) = &spec.tls {
        out.extend(tls.other.keys().map(|k| format!("tls.{k}")));
        if let Some(cv) = &tls.client_validation {
            out.extend(cv.other.keys().map(|k| format!("tls.clientValidation.{k}")));
        }
    }
    if let Some(h) = &spec.headers {
        out.extend(h.other.keys().map(|k| format!("headers.{k}")));
    }
    if let Some(t) = &spec.timeout {
        out.extend(t.other.keys().map(|k| format!("timeout.{k}")));
        if let Some(tcp) = &t.tcp {
            out.extend(tcp.other.keys().map(|k| format!("timeout.tcp.{k}")));
        }
    }
    if let Some(d) = &spec.client_ip_detection {
        out.extend(d.other.keys().map(|k| format!("clientIPDetection.{k}")));
        if let Some(x) = &d.x_forwarded_for {
            out.extend(
                x.other
                    .keys()
                    .map(|k| format!("clientIPDetection.xForwardedFor.{k}")),
            );
        }
        if let Some(h) = &d.custom_header {
            out.extend(
                h.other
                    .keys()
                    .map(|k| format!("clientIPDetection.customHeader.{k}")),
            );
        }
    }
    if let Some(c) = &spec.connection {
        out.extend(c.other.keys().map(|k| format!("connection.{k}")));
        if let Some(l) = &c.connection_limit {
            out.extend(
                l.other
                    .keys()
                    .map(|k| format!("connection.connectionLimit.{k}")),
            );
        }
    }
    out
}

/// The settings of a policy in namespace `ns`, or every problem with its field path.
fn read(
    cx: &Context<'_>,
    ns: &str,
    spec: &ClientTrafficPolicySpec,
) -> Result<Values, Vec<ConfigError>> {
    let mut problems = Vec::new();
    let mut tls = ListenerTls::default();
    if let Some(t) = &spec.tls {
        tls = read_tls(cx, ns, t, tls, &mut problems);
    }
    if let Some(x) = spec
        .headers
        .as_ref()
        .and_then(|h| h.x_forwarded_client_cert.as_ref())
    {
        let mode = match x.mode.as_deref() {
            // Envoy Gateway's default once the field is set.
            None | Some("Sanitize") => Some(ForwardClientCertMode::Sanitize),
            Some("ForwardOnly") => Some(ForwardClientCertMode::ForwardOnly),
            Some("AppendForward") => Some(ForwardClientCertMode::AppendForward),
            Some("SanitizeSet") => Some(ForwardClientCertMode::SanitizeSet),
            Some("AlwaysForwardOnly") => Some(ForwardClientCertMode::AlwaysForwardOnly),
            Some(other) => {
                problems.push(ConfigError::new(
                    "spec.headers.xForwardedClientCert.mode",
                    format!("{other:?} is not Sanitize, ForwardOnly, AppendForward, SanitizeSet or AlwaysForwardOnly"),
                ));
                None
            }
        };
        let mut details = CertDetails::HASH_ONLY;
        for (i, d) in x.cert_details_to_add.iter().enumerate() {
            match d.as_str() {
                "Subject" => details.subject = true,
                "Cert" => details.cert = true,
                "Chain" => details.chain = true,
                "DNS" => details.dns = true,
                "URI" => details.uri = true,
                other => problems.push(ConfigError::new(
                    format!("spec.headers.xForwardedClientCert.certDetailsToAdd[{i}]"),
                    format!("{other:?} is not Subject, Cert, Chain, DNS or URI"),
                )),
            }
        }
        if let Some(mode) = mode {
            tls = tls.forward_client_cert(ForwardClientCert { mode, details });
        }
    }
    let proxy_protocol = match (&spec.proxy_protocol, spec.enable_proxy_protocol) {
        (Some(p), _) => {
            if p.optional == Some(true) {
                problems.push(ConfigError::new(
                    "spec.proxyProtocol.optional",
                    "gatekit requires the PROXY protocol header when it is enabled (a header a client may omit is one it can forge)",
                ));
            }
            true
        }
        (None, Some(on)) => on,
        (None, None) => false,
    };
    let idle_timeout = spec
        .timeout
        .as_ref()
        .and_then(|t| t.tcp.as_ref())
        .and_then(|t| t.idle_timeout.as_deref())
        .and_then(|v| {
            let field = "spec.timeout.tcp.idleTimeout";
            match crate::duration::parse(v) {
                Ok(d) if d.is_zero() => {
                    problems.push(ConfigError::new(field, "must be longer than 0s"));
                    None
                }
                Ok(d) => Some(d),
                Err(e) => {
                    problems.push(ConfigError::new(field, e.to_string()));
                    None
                }
            }
        });
    let connection_limit = spec
        .connection
        .as_ref()
        .and_then(|c| c.connection_limit.as_ref())
        .and_then(|l| {
            let field = "spec.connection.connectionLimit.value";
            match l.value.map(usize::try_from) {
                Some(Ok(n)) if n > 0 => Some(n),
                Some(_) => {
                    problems.push(ConfigError::new(field, "must be at least 1"));
                    None
                }
                None => {
                    problems.push(ConfigError::new(field, "required"));
                    None
                }
            }
        });
    let client_ip = spec
        .client_ip_detection
        .as_ref()
        .and_then(|d| client_ip(d, &mut problems))
        .map(Arc::new);
    if problems.is_empty() {
        Ok(Values {
            tls,
            proxy_protocol,
            idle_timeout,
            connection_limit,
            client_ip,
        })
    } else {
        Err(problems)
    }
}

/// `clientIPDetection` as Envoy Gateway defines it: `xForwardedFor` with exactly one of
/// `numTrustedHops` and `trustedCIDRs` (at least one range), or `customHeader`, not
/// both. `None` (and no problem) when it detects nothing: `{}`, `numTrustedHops: 0`.
fn client_ip(
    d: &CtpClientIpDetection,
    problems: &mut Vec<ConfigError>,
) -> Option<ClientIpDetection> {
    const FIELD: &str = "spec.clientIPDetection";
    match (&d.x_forwarded_for, &d.custom_header) {
        (Some(_), Some(_)) => {
            problems.push(ConfigError::new(
                FIELD,
                "customHeader cannot be used in conjunction with xForwardedFor",
            ));
            None
        }
        (Some(x), None) => match (x.num_trusted_hops, &x.trusted_cidrs) {
            (Some(0), None) => None,
            (Some(hops), None) => Some(ClientIpDetection::xff_trusted_hops(hops)),
            (None, Some(cidrs)) => {
                let field = format!("{FIELD}.xForwardedFor.trustedCIDRs");
                if cidrs.is_empty() {
                    problems.push(ConfigError::new(field, "at least one range is required"));
                    return None;
                }
                let mut ranges = Vec::with_capacity(cidrs.len());
                for (i, c) in cidrs.iter().enumerate() {
                    match c.parse::<Cidr>() {
                        Ok(r) => ranges.push(r),
                        Err(e) => problems.push(e.within(&format!("{field}[{i}]"))),
                    }
                }
                (ranges.len() == cidrs.len()).then(|| ClientIpDetection::xff_trusted_cidrs(ranges))
            }
            _ => {
                problems.push(ConfigError::new(
                    format!("{FIELD}.xForwardedFor"),
                    "only one of numTrustedHops or trustedCIDRs must be set",
                ));
                None
            }
        },
        (None, Some(h)) => {
            let field = format!("{FIELD}.customHeader.name");
            let valid = (1..=255).contains(&h.name.len())
                && h.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            match http::HeaderName::from_bytes(h.name.as_bytes()) {
                Ok(name) if valid => Some(ClientIpDetection::custom_header(
                    name,
                    h.fail_closed == Some(true),
                )),
                _ => {
                    problems.push(ConfigError::new(
                        field,
                        format!(
                            "{:?} is not a header name (letters, digits and '-', 1 to 255)",
                            h.name
                        ),
                    ));
                    None
                }
            }
        }
        (None, None) => None,
    }
}

fn version(
    field: &str,
    value: Option<&str>,
    auto: TlsVersion,
    problems: &mut Vec<ConfigError>,
) -> TlsVersion {
    match value {
        None | Some("Auto") => auto,
        Some("1.2") => TlsVersion::Tls12,
        Some("1.3") => TlsVersion::Tls13,
        Some(v @ ("1.0" | "1.1")) => {
            problems.push(ConfigError::new(
                field,
                format!("TLS {v} is not offered by rustls (gatekit serves TLS 1.2 and 1.3)"),
            ));
            auto
        }
        Some(v) => {
            problems.push(ConfigError::new(
                field,
                format!("{v:?} is not Auto, 1.2 or 1.3"),
            ));
            auto
        }
    }
}

fn read_tls(
    cx: &Context<'_>,
    ns: &str,
    t: &CtpTls,
    tls: ListenerTls,
    problems: &mut Vec<ConfigError>,
) -> ListenerTls {
    let min = version(
        "spec.tls.minVersion",
        t.min_version.as_deref(),
        TlsVersion::Tls12,
        problems,
    );
    let max = version(
        "spec.tls.maxVersion",
        t.max_version.as_deref(),
        TlsVersion::Tls13,
        problems,
    );
    let mut tls = tls.versions(min, max);
    if let Some(ciphers) = &t.ciphers {
        let mut suites = Vec::new();
        for (i, c) in ciphers.iter().enumerate() {
            match gatekit_core::tls::cipher_suites(c) {
                Ok(mut s) => suites.append(&mut s),
                Err(e) => problems.push(ConfigError::new(format!("spec.tls.ciphers[{i}]"), e)),
            }
        }
        tls = tls.cipher_suites(Some(suites));
    }
    if let Some(alpn) = &t.alpn_protocols {
        let mut protocols = Vec::new();
        for (i, a) in alpn.iter().enumerate() {
            match a.as_str() {
                "h2" | "http/1.1" | "http/1.0" => protocols.push(a.as_bytes().to_vec()),
                other => problems.push(ConfigError::new(
                    format!("spec.tls.alpnProtocols[{i}]"),
                    format!("{other:?} is not h2, http/1.1 or http/1.0"),
                )),
            }
        }
        tls = tls.alpn(Some(protocols));
    }
    if let Some(r) = t.session.as_ref().and_then(|s| s.resumption.as_ref()) {
        tls = tls.resumption_methods(r.stateless.is_some(), r.stateful.is_some());
    }
    if let Some(cv) = &t.client_validation {
        let refs: Vec<CaRef<'_>> = cv
            .ca_certificate_refs
            .iter()
            .map(|r| CaRef {
                group: r.group.as_deref().unwrap_or(""),
                kind: r.kind.as_deref().unwrap_or("Secret"),
                name: &r.name,
                namespace: r.namespace.as_deref(),
            })
            .collect();
        // Another namespace's CA needs a grant naming ClientTrafficPolicies, which
        // gatekit's grant index (Gateway API kinds) does not hold: refused.
        let (roots, problem) = ca_bundle(cx, &refs, ns, &|_, _, _| false);
        if let Some((_, message)) = problem {
            problems.push(ConfigError::new(
                "spec.tls.clientValidation.caCertificateRefs",
                message,
            ));
        } else if roots.is_empty() {
            problems.push(ConfigError::new(
                "spec.tls.clientValidation.caCertificateRefs",
                "no CA certificate: client certificates could not be verified",
            ));
        }
        let mode = if cv.optional == Some(true) {
            ClientCertMode::Optional
        } else {
            ClientCertMode::Required
        };
        tls = tls.client_validation(Some(ClientValidation::new(roots, mode)));
    }
    if let Err(e) = tls.check() {
        problems.push(ConfigError::new("spec.tls", e.to_string()));
    }
    tls
}
