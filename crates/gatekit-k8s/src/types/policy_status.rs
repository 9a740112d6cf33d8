//! The status of gatekit's policies, in the Gateway API policy shape (GEP-713,
//! `PolicyAncestorStatus`): one entry per object the policy targets, per controller.
//!
//! gatekit writes these through the `/status` subresource (`status_write`); the types
//! here give the CRDs their `status` schema and let clients read it back typed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The status of a `BackendPolicy` or `TrafficPolicy`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// One entry per (target, controller): whether the policy applies there. Shared by
    /// every controller that evaluates the policy; each writes only its own entries.
    #[serde(default)]
    pub ancestors: Vec<PolicyAncestorStatus>,
}

/// What one controller says about the policy at one target.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAncestorStatus {
    /// The object this entry is about: the policy's target.
    pub ancestor_ref: PolicyAncestorRef,
    /// The controller that wrote this entry (gatekit: its GatewayClass's
    /// `controllerName`).
    pub controller_name: String,
    /// `Accepted`, with reason `Accepted`, `Conflicted`, `TargetNotFound` or `Invalid`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A reference to a policy's target, as written in a policy status.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAncestorRef {
    /// API group of the target (`""` for core kinds such as Service).
    #[serde(default)]
    pub group: String,
    /// Kind of the target.
    pub kind: String,
    /// Namespace of the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the target.
    pub name: String,
    /// The section of the target (a listener, a route rule), when the policy named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}
