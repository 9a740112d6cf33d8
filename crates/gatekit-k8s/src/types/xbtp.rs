//! The Gateway API's `XBackendTrafficPolicy` (`gateway.networking.x-k8s.io/v1alpha1`):
//! session persistence (GEP-1619) and retry constraints (GEP-3388) per Service.
//!
//! The `gateway-api` crate's type carries the v1.5/v1.6 `SessionPersistence` schema
//! (`sessionName`, `cookieConfig.lifetimeType`, `idleTimeout`); Gateway API v1.7
//! replaced it with `cookie` (`name`, `path`, `lifetimeType`) and `header` (`name`).
//! [`SessionPersistence`] reads both shapes, and keeps every other key in its `other`
//! maps so the translation can refuse it by name rather than drop it. Which
//! combinations are valid is the translation's business (`translate::session`).
//! `targetRefs`, `retryConstraint` and the status are the crate's types.

use std::collections::BTreeMap;

use gateway_api::experimental::xbackendtrafficpolicies::{
    XBackendTrafficPolicyRetryConstraint, XBackendTrafficPolicyTargetRefs,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The spec of an `XBackendTrafficPolicy`.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gateway.networking.x-k8s.io",
    version = "v1alpha1",
    kind = "XBackendTrafficPolicy",
    plural = "xbackendtrafficpolicies",
    status = "XBackendTrafficPolicyStatus",
    namespaced,
    derive = "Default",
    derive = "PartialEq",
    doc = "A Gateway API XBackendTrafficPolicy: session persistence and retry constraints for Services."
)]
#[serde(rename_all = "camelCase")]
pub struct XBackendTrafficPolicySpec {
    /// The Services (in the policy's namespace) this policy applies to.
    pub target_refs: Vec<XBackendTrafficPolicyTargetRefs>,
    /// The retry budget of requests to the targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_constraint: Option<XBackendTrafficPolicyRetryConstraint>,
    /// Session persistence to the targets' endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_persistence: Option<SessionPersistence>,
    /// Every other spec key: refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

pub use gateway_api::experimental::xbackendtrafficpolicies::XBackendTrafficPolicyStatus;

/// A Gateway API `SessionPersistence` in the v1.7 shape (`cookie`, `header`) or the
/// v1.5/v1.6 one (`sessionName`, `cookieConfig`, `idleTimeout`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionPersistence {
    /// `Cookie` (the default) or `Header`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<SessionType>,
    /// How long a session lasts from its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absolute_timeout: Option<String>,
    /// v1.7: the cookie of a cookie-based session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<CookieConfig>,
    /// v1.7: the header of a header-based session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderConfig>,
    /// v1.5/v1.6: the cookie or header name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_name: Option<String>,
    /// v1.5/v1.6: the cookie's lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_config: Option<LegacyCookieConfig>,
    /// v1.5/v1.6: how long a session lasts without a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    /// Every other key: refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Where a session token travels.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionType {
    /// A cookie.
    Cookie,
    /// A header.
    Header,
}

/// Whether a session cookie outlives the browser session.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifetimeType {
    /// Until the browser session ends (the default).
    Session,
    /// Until the absolute timeout (`Max-Age`).
    Permanent,
}

/// v1.7 `cookie`: the cookie of a cookie-based session.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CookieConfig {
    /// The cookie's name; generated when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The cookie's `Path` attribute (`/` when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `Session` (the default) or `Permanent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_type: Option<LifetimeType>,
    /// Every other key: refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// v1.7 `header`: the header of a header-based session.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HeaderConfig {
    /// The header's name (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Every other key: refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// v1.5/v1.6 `cookieConfig`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LegacyCookieConfig {
    /// `Session` (the default) or `Permanent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_type: Option<LifetimeType>,
    /// Every other key: refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}
