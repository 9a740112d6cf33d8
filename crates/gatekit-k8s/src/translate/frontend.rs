//! Client certificate validation of HTTPS listeners from a Gateway's `spec.tls.frontend`
//! (GEP-91, Gateway API v1.5): `default.validation` for every HTTPS listener, a
//! `perPort` entry instead for the listeners on its port.
//!
//! `caCertificateRefs` name ConfigMaps (Core) or Secrets (gatekit also reads them) with
//! a PEM bundle under `ca.crt`, in the Gateway's namespace or another one whose
//! ReferenceGrant allows it. Every usable ref's certificates are trusted. A ref that
//! cannot be used sets the listener's `ResolvedRefs=False` with `InvalidCACertificateRef`
//! (missing object, no `ca.crt`, not PEM), `InvalidCACertificateKind` (another kind) or
//! `RefNotPermitted`; when no ref is usable the listener is also `Accepted=False` with
//! `NoValidCACertificate` and is not served (serving it without the validation asked for
//! would let any client in). `mode: AllowInsecureFallback` serves clients without a
//! certificate, or with one that does not verify (no identity is forwarded for them),
//! and sets the Gateway's `InsecureFrontendValidationMode=True` (`ConfigurationChanged`).
//! HTTP listeners are not affected.

use gatekit_core::tls::{CertificateDer, ClientCertMode, ClientValidation, load_certs};

use super::backend::Context;
use crate::status::reason;
use crate::types::Gateway;

pub(crate) use super::backend_tls::{INVALID_CA_CERTIFICATE_REF, NO_VALID_CA_CERTIFICATE};

/// Listener reason: a CA certificate ref names an unsupported kind.
pub(crate) const INVALID_CA_CERTIFICATE_KIND: &str = "InvalidCACertificateKind";
/// Gateway condition type: a frontend validation mode is `AllowInsecureFallback`.
pub(crate) const INSECURE_FRONTEND_VALIDATION_MODE: &str = "InsecureFrontendValidationMode";
/// The reason of [`INSECURE_FRONTEND_VALIDATION_MODE`].
pub(crate) const CONFIGURATION_CHANGED: &str = "ConfigurationChanged";

/// What a listener's frontend validation came to.
pub(crate) enum Frontend {
    /// No validation configured for the port.
    None,
    /// Validation with the usable CAs; `problem` names the first unusable ref.
    Valid {
        validation: ClientValidation,
        problem: Option<(&'static str, String)>,
    },
    /// Validation configured and no ref usable.
    NoneValid { problem: (&'static str, String) },
}

/// One `caCertificateRefs` entry, whichever type it came in.
pub(crate) struct CaRef<'r> {
    pub(crate) group: &'r str,
    pub(crate) kind: &'r str,
    pub(crate) name: &'r str,
    pub(crate) namespace: Option<&'r str>,
}

/// The served Gateway `ns/name`.
pub(crate) fn gateway<'a>(cx: &Context<'a>, ns: &str, name: &str) -> Option<&'a Gateway> {
    cx.resources.gateways.iter().find(|g| {
        g.metadata.namespace.as_deref().unwrap_or("default") == ns
            && g.metadata.name.as_deref() == Some(name)
    })
}

/// The validation `gw`'s `spec.tls.frontend` asks of its HTTPS listeners on `port`.
pub(crate) fn gateway_validation(cx: &Context<'_>, gw: &Gateway, port: u16) -> Frontend {
    let Some(frontend) = gw.spec.tls.as_ref().and_then(|t| t.frontend.as_ref()) else {
        return Frontend::None;
    };
    let gw_ns = gw.metadata.namespace.as_deref().unwrap_or("default");
    let per_port = frontend
        .per_port
        .iter()
        .flatten()
        .find(|p| u16::try_from(p.port).ok() == Some(port));
    let (refs, insecure): (Vec<CaRef<'_>>, bool) = match per_port {
        Some(p) => match &p.tls.validation {
            None => return Frontend::None,
            Some(v) => (
                v.ca_certificate_refs
                    .iter()
                    .map(|r| CaRef {
                        group: &r.group,
                        kind: &r.kind,
                        name: &r.name,
                        namespace: r.namespace.as_deref(),
                    })
                    .collect(),
                matches!(
                    v.mode,
                    Some(gateway_api::gateways::GatewayTlsFrontendPerPortTlsValidationMode::AllowInsecureFallback)
                ),
            ),
        },
        None => match &frontend.default.validation {
            None => return Frontend::None,
            Some(v) => (
                v.ca_certificate_refs
                    .iter()
                    .map(|r| CaRef {
                        group: &r.group,
                        kind: &r.kind,
                        name: &r.name,
                        namespace: r.namespace.as_deref(),
                    })
                    .collect(),
                matches!(
                    v.mode,
                    Some(gateway_api::gateways::GatewayTlsFrontendDefaultValidationMode::AllowInsecureFallback)
                ),
            ),
        },
    };
    let mode = if insecure {
        ClientCertMode::InsecureFallback
    } else {
        ClientCertMode::Required
    };
    let (roots, problem) = ca_bundle(cx, &refs, gw_ns, &|ns, kind, name| {
        cx.grant_allows("Gateway", gw_ns, "", kind, ns, name)
    });
    match (roots.is_empty(), problem) {
        (true, problem) => Frontend::NoneValid {
            problem: problem.unwrap_or((
                INVALID_CA_CERTIFICATE_REF,
                "tls.frontend validation names no CA certificate".to_owned(),
            )),
        },
        (false, problem) => Frontend::Valid {
            validation: ClientValidation::new(roots, mode),
            problem,
        },
    }
}

/// Whether `gw`'s frontend validation uses `AllowInsecureFallback` anywhere.
pub(crate) fn insecure_fallback(gw: &Gateway) -> bool {
    let Some(frontend) = gw.spec.tls.as_ref().and_then(|t| t.frontend.as_ref()) else {
        return false;
    };
    let default = frontend.default.validation.as_ref().is_some_and(|v| {
        matches!(
            v.mode,
            Some(gateway_api::gateways::GatewayTlsFrontendDefaultValidationMode::AllowInsecureFallback)
        )
    });
    default
        || frontend.per_port.iter().flatten().any(|p| {
            p.tls.validation.as_ref().is_some_and(|v| {
                matches!(
                    v.mode,
                    Some(gateway_api::gateways::GatewayTlsFrontendPerPortTlsValidationMode::AllowInsecureFallback)
                )
            })
        })
}

/// The CA certificates of `refs` (relative to namespace `home`; a ref elsewhere needs
/// `granted(ns, kind, name)`), and the first problem with a ref.
pub(crate) fn ca_bundle(
    cx: &Context<'_>,
    refs: &[CaRef<'_>],
    home: &str,
    granted: &dyn Fn(&str, &str, &str) -> bool,
) -> (Vec<CertificateDer<'static>>, Option<(&'static str, String)>) {
    let mut roots = Vec::new();
    let mut problem = None;
    for r in refs {
        match ca_ref(cx, r, home, granted) {
            Ok(mut certs) => roots.append(&mut certs),
            Err(p) => {
                problem.get_or_insert(p);
            }
        }
    }
    (roots, problem)
}

fn ca_ref(
    cx: &Context<'_>,
    r: &CaRef<'_>,
    home: &str,
    granted: &dyn Fn(&str, &str, &str) -> bool,
) -> Result<Vec<CertificateDer<'static>>, (&'static str, String)> {
    let ns = r.namespace.unwrap_or(home);
    let what = format!("{} {ns}/{}", r.kind, r.name);
    if !r.group.is_empty() || !matches!(r.kind, "ConfigMap" | "Secret") {
        return Err((
            INVALID_CA_CERTIFICATE_KIND,
            format!(
                "caCertificateRef kind {}/{} is not supported (ConfigMap or Secret)",
                r.group, r.kind
            ),
        ));
    }
    if ns != home && !granted(ns, r.kind, r.name) {
        return Err((
            reason::REF_NOT_PERMITTED,
            format!(
                "caCertificateRef to {what} is not permitted by any ReferenceGrant in namespace {ns}"
            ),
        ));
    }
    let pem = cx
        .ca_pem(ns, r.kind, r.name)
        .map_err(|m| (INVALID_CA_CERTIFICATE_REF, m))?;
    let Some(pem) = pem else {
        return Err((INVALID_CA_CERTIFICATE_REF, format!("{what} has no ca.crt")));
    };
    let certs = load_certs(&pem, &what).map_err(|e| (INVALID_CA_CERTIFICATE_REF, e.to_string()))?;
    if let Some(reason) = certs
        .iter()
        .find_map(|c| gatekit_core::tls::trust_anchor_problem(c))
    {
        return Err((
            INVALID_CA_CERTIFICATE_REF,
            format!("{what}: ca.crt is not a usable CA certificate: {reason}"),
        ));
    }
    Ok(certs)
}
