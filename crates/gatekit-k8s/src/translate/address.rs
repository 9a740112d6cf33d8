//! Gateway `status.addresses`: where clients reach the Gateways gatekit serves.
//!
//! gatekit assigns no addresses; in a cluster the replicas sit behind one Service
//! (`deploy/service.yaml`), and that Service's addresses are the Gateways'. When
//! [`TranslateOptions::gateway_service`] names it, every accepted Gateway reports its
//! load-balancer ingress addresses (IPs and hostnames) and external IPs, or, for a
//! Service without a load balancer, its cluster IPs. A load balancer not yet assigned
//! (or the Service missing) leaves the Gateway `Programmed=False`, reason
//! `AddressNotAssigned`, as the spec asks; serving is unaffected.
//!
//! `spec.addresses` asks for addresses. With the gateway Service known, a request of
//! type `IPAddress` or `Hostname` is honoured when the Service has that address, or,
//! with no value (`GatewayAddressEmpty`), any address of that type; one it lacks leaves
//! the Gateway `Programmed=False`, `AddressNotAssigned`, naming it. Any other type, and
//! every request when the Service is not known (gatekit assigns nothing itself), is
//! refused: `Accepted=False`, `UnsupportedAddress`, and the Gateway is not served.

use crate::manifest::ResourceSet;
use crate::status::{Condition, GatewayAddress, ResourceStatus, reason};
use crate::types::{Gateway, Object};

use super::TranslateOptions;

/// Why `gw`'s `spec.addresses` cannot be honoured at all (`UnsupportedAddress`), or
/// `None` when it requests nothing or every request can be checked against the gateway
/// Service.
pub(crate) fn refused_request(options: &TranslateOptions, gw: &Gateway) -> Option<String> {
    let requested: Vec<_> = gw.spec.addresses.iter().flatten().collect();
    if requested.is_empty() {
        return None;
    }
    let describe = || {
        requested
            .iter()
            .map(|a| {
                let t = a.r#type.as_deref().unwrap_or("IPAddress");
                match a.value.as_deref().filter(|v| !v.is_empty()) {
                    Some(v) => format!("{t} {v}"),
                    None => format!("{t} (any)"),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if options.gateway_service.is_none() {
        return Some(format!(
            "spec.addresses is not supported: gatekit assigns no address to a Gateway \
             (requested: {}); name the Service in front of the replicas in the settings \
             (kubernetes.gatewayService) to request its addresses",
            describe()
        ));
    }
    let unsupported: Vec<String> = requested
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            let t = a.r#type.as_deref().unwrap_or("IPAddress");
            (t != "IPAddress" && t != "Hostname").then(|| format!("spec.addresses[{i}].type {t}"))
        })
        .collect();
    (!unsupported.is_empty()).then(|| {
        format!(
            "{} is not supported (IPAddress and Hostname are)",
            unsupported.join(", ")
        )
    })
}

/// The requests of `gw`'s `spec.addresses` that `assigned` does not satisfy.
fn unassigned(gw: &Gateway, assigned: &[GatewayAddress]) -> Vec<String> {
    gw.spec
        .addresses
        .iter()
        .flatten()
        .filter_map(|a| {
            let t = a.r#type.as_deref().unwrap_or("IPAddress");
            match a.value.as_deref().filter(|v| !v.is_empty()) {
                Some(v) if !assigned.iter().any(|x| x.type_() == t && x.value() == v) => {
                    Some(format!("{t} {v}"))
                }
                None if !assigned.iter().any(|x| x.type_() == t) => Some(format!("{t} (any)")),
                _ => None,
            }
        })
        .collect()
}

/// Sets `status.addresses` of every Gateway status, when the options name the gateway
/// Service.
pub(crate) fn gateway_addresses(
    resources: &ResourceSet,
    options: &TranslateOptions,
    statuses: &mut [ResourceStatus],
) {
    let Some((ns, name)) = &options.gateway_service else {
        return;
    };
    let service = resources
        .services
        .iter()
        .find(|s| s.namespace() == Some(ns.as_str()) && s.name() == name.as_str());
    let addresses = service.map_or_else(Vec::new, |s| s.addresses().to_vec());
    let missing = match service {
        None => Some(format!(
            "the gateway Service {ns}/{name} (settings: kubernetes.gatewayService) does not exist"
        )),
        Some(_) if addresses.is_empty() => Some(format!(
            "the gateway Service {ns}/{name} has no address yet (load balancer pending)"
        )),
        Some(_) => None,
    };
    for status in statuses
        .iter_mut()
        .filter(|s| s.resource().kind() == "Gateway")
    {
        let Some(gw) = resources.gateways.iter().find(|g| {
            g.metadata.namespace.as_deref() == status.resource().namespace()
                && g.metadata.name.as_deref() == Some(status.resource().name())
        }) else {
            continue;
        };
        status.set_addresses(addresses.clone());
        let programmed = status
            .condition(reason::PROGRAMMED)
            .is_some_and(Condition::is_true);
        let not_assigned = unassigned(gw, &addresses);
        let message = match &missing {
            Some(m) => Some(m.clone()),
            None if !not_assigned.is_empty() => Some(format!(
                "requested {} not among the addresses of the gateway Service {ns}/{name}",
                not_assigned.join(", ")
            )),
            None => None,
        };
        if let (Some(message), true) = (message, programmed) {
            let generation = status.generation();
            status.replace_condition(Condition::new(
                reason::PROGRAMMED,
                false,
                reason::ADDRESS_NOT_ASSIGNED,
                message,
                generation,
            ));
        }
    }
}
