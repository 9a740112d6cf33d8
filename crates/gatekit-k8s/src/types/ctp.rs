//! Envoy Gateway's `ClientTrafficPolicy` (`gateway.envoyproxy.io/v1alpha1`): how a
//! Gateway's listeners treat their clients. gatekit reads the listener-side TLS
//! settings, PROXY protocol and the `x-forwarded-client-cert` policy:
//!
//! - `tls.minVersion` / `tls.maxVersion`: `1.2`, `1.3` or `Auto` (gatekit's default,
//!   1.2 to 1.3); `1.0` and `1.1` are refused (rustls does not offer them);
//! - `tls.ciphers`: OpenSSL/BoringSSL names (`ECDHE-RSA-AES128-GCM-SHA256`), IANA names,
//!   or Envoy's `[A|B]` groups, mapped to rustls suites; a name rustls does not offer
//!   refuses the policy, naming `tls.ciphers[i]`;
//! - `tls.alpnProtocols`: `h2`, `http/1.1`, `http/1.0` (the ALPN list offered);
//! - `tls.clientValidation`: `caCertificateRefs` (ConfigMaps or Secrets with `ca.crt`,
//!   in the policy's namespace or granted by a ReferenceGrant) and `optional`;
//! - `tls.session.resumption`: absent, gatekit's default (stateless tickets and a
//!   bounded session cache, unlike Envoy Gateway, which resumes nothing by default);
//!   present, only what it names (`stateless: {}`, `stateful: {}`; `{}` turns resumption
//!   off);
//! - `proxyProtocol` (`optional` is refused: gatekit requires the header when enabled)
//!   and the deprecated `enableProxyProtocol`;
//! - `headers.xForwardedClientCert`: `mode` and `certDetailsToAdd`;
//! - `timeout.tcp.idleTimeout`: the idle timeout of the stream connections of the
//!   targeted `TLS` and `TCP` listeners (Envoy Gateway's default, 1 hour, when unset;
//!   no effect on HTTP and UDP listeners, as in Envoy Gateway);
//! - `connection.connectionLimit.value` (at least 1): most connections open at once on
//!   the targeted listener's port; beyond it a new connection is closed at accept;
//! - `clientIPDetection`: `xForwardedFor.numTrustedHops` or `xForwardedFor.trustedCIDRs`
//!   (one of them), or `customHeader` (`name`, `failClosed`): how the client of a
//!   request is found behind trusted proxies on the targeted HTTP and HTTPS listeners
//!   (see [`gatekit_core::client_ip`]).
//!
//! Every other field (`timeout.http`, `connection.connectionLimit.closeDelay`,
//! `connection.bufferLimit`, HTTP/1 and HTTP/2 settings,
//! `tls.ecdhCurves`, `clientValidation.spkiHashes`, ...) is kept in an `other` map so
//! that the translation refuses the policy naming it (`Accepted=False`) instead of
//! silently serving without it. Targets: `targetRefs` (or the older `targetRef`) naming
//! Gateways in the policy's namespace, with `sectionName` for one listener. A policy for
//! a listener wins over one for its whole Gateway; of two for the same target the older
//! wins and the other is `Conflicted`.
//!
//! gatekit does not install this CRD; it reads the objects Envoy Gateway's CRD defines.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The spec of a `ClientTrafficPolicy` (the fields gatekit reads).
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gateway.envoyproxy.io",
    version = "v1alpha1",
    kind = "ClientTrafficPolicy",
    plural = "clienttrafficpolicies",
    status = "crate::types::PolicyStatus",
    namespaced,
    derive = "Default",
    derive = "PartialEq",
    doc = "Envoy Gateway's ClientTrafficPolicy, as gatekit reads it."
)]
#[serde(rename_all = "camelCase")]
pub struct ClientTrafficPolicySpec {
    /// The Gateways (or listeners, with `sectionName`) this policy applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<CtpTargetRef>,
    /// The older, single target (deprecated in Envoy Gateway, still read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<CtpTargetRef>,
    /// TLS settings of the targeted listeners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<CtpTls>,
    /// PROXY protocol on the targeted listeners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<CtpProxyProtocol>,
    /// PROXY protocol on (deprecated; `proxyProtocol` wins when both are set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_proxy_protocol: Option<bool>,
    /// Header handling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<CtpHeaders>,
    /// Client-side timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<CtpTimeout>,
    /// Connection settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<CtpConnection>,
    /// How a request's client is found behind trusted proxies.
    #[serde(
        default,
        rename = "clientIPDetection",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_ip_detection: Option<CtpClientIpDetection>,
    /// Every other spec field: not implemented by gatekit, named in the policy's status.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl ClientTrafficPolicySpec {
    /// `targetRefs`, then `targetRef`.
    pub fn targets(&self) -> impl Iterator<Item = &CtpTargetRef> {
        self.target_refs.iter().chain(self.target_ref.iter())
    }
}

/// A `ClientTrafficPolicy` target: a Gateway, or one of its listeners.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CtpTargetRef {
    /// `gateway.networking.k8s.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `Gateway` (a `ListenerSet` target is refused).
    pub kind: String,
    /// The Gateway's name, in the policy's namespace.
    pub name: String,
    /// A listener name: only that listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// `tls`: the targeted listeners' TLS settings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CtpTls {
    /// Lowest version offered: `Auto`, `1.2`, `1.3` (`1.0`, `1.1` refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
    /// Highest version offered: `Auto`, `1.2`, `1.3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_version: Option<String>,
    /// Cipher suites (TLS 1.2; TLS 1.3 names are honoured too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphers: Option<Vec<String>>,
    /// ALPN protocols offered, in order: `h2`, `http/1.1`, `http/1.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpn_protocols: Option<Vec<String>>,
    /// Client certificate validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_validation: Option<CtpClientValidation>,
    /// Session resumption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<CtpSession>,
    /// Every other field (`ecdhCurves`, `signatureAlgorithms`, ...): refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `tls.clientValidation`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CtpClientValidation {
    /// A client may connect without a certificate (one it sends must verify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
    /// ConfigMaps or Secrets holding the trusted CA bundle under `ca.crt`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_certificate_refs: Vec<CtpCaRef>,
    /// Every other field (`spkiHashes`, `subjectAltNames`, `crl`, ...): refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// A CA bundle reference.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CtpCaRef {
    /// `""` (core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `ConfigMap` or `Secret` (default `Secret`, as Envoy Gateway's `SecretObjectReference`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name.
    pub name: String,
    /// Namespace (default: the policy's; another needs a ReferenceGrant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `tls.session`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CtpSession {
    /// Which resumption methods are on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumption: Option<CtpResumption>,
}

/// `tls.session.resumption`: present methods are on, absent ones off.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CtpResumption {
    /// Session tickets (TLS 1.3 stateless resumption).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub stateless: Option<serde_json::Value>,
    /// A server-side session cache (session ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub stateful: Option<serde_json::Value>,
}

/// `proxyProtocol`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CtpProxyProtocol {
    /// Accept connections without the header too (refused by gatekit: a header a
    /// client may omit is one a client may forge by sending its own bytes first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// `headers`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CtpHeaders {
    /// The `x-forwarded-client-cert` policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_forwarded_client_cert: Option<CtpXfcc>,
    /// Every other field: refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `headers.xForwardedClientCert`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CtpXfcc {
    /// `Sanitize`, `ForwardOnly`, `AppendForward`, `SanitizeSet`, `AlwaysForwardOnly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `Subject`, `Cert`, `Chain`, `DNS`, `URI`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cert_details_to_add: Vec<String>,
}

/// `timeout`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CtpTimeout {
    /// Timeouts of `TLS` and `TCP` listeners' connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<CtpTcpTimeout>,
    /// Every other field (`http`, ...): refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `timeout.tcp`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CtpTcpTimeout {
    /// How long a relayed connection may pass no byte either way before it is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    /// Every other field: refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `connection`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CtpConnection {
    /// A bound on the listener's open connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_limit: Option<CtpConnectionLimit>,
    /// Every other field (`bufferLimit`, ...): refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `connection.connectionLimit`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CtpConnectionLimit {
    /// Most connections open at once (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<i64>,
    /// Every other field (`closeDelay`, ...): refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `clientIPDetection`: at most one of `xForwardedFor` and `customHeader`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CtpClientIpDetection {
    /// The client from `X-Forwarded-For`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_forwarded_for: Option<CtpXForwardedFor>,
    /// The client from a header a trusted proxy sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_header: Option<CtpCustomHeader>,
    /// Every other field: refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `clientIPDetection.xForwardedFor`: exactly one of `numTrustedHops` and
/// `trustedCIDRs`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CtpXForwardedFor {
    /// Proxies always in front: the client is this many addresses from the right of the
    /// received header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_trusted_hops: Option<u32>,
    /// Ranges of trusted proxies: from a peer in them, the rightmost address outside
    /// them.
    #[serde(
        default,
        rename = "trustedCIDRs",
        skip_serializing_if = "Option::is_none"
    )]
    pub trusted_cidrs: Option<Vec<String>>,
    /// Every other field: refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `clientIPDetection.customHeader`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CtpCustomHeader {
    /// The header holding the client's address (`^[A-Za-z0-9-]+$`, 1 to 255 characters).
    pub name: String,
    /// Refuse (403) a request without a valid address in the header, instead of taking
    /// the peer as the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_closed: Option<bool>,
    /// Every other field: refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}
