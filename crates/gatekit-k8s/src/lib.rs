//! gatekit-k8s: Kubernetes resources, their translation into gatekit-core's route model,
//! and (later) the providers that feed them (API servers, or a directory of manifests).
//!
//! What is here today:
//!
//! - [`types`]: the Kubernetes types gatekit reads (Gateway API from the `gateway-api`
//!   crate, core types from `k8s-openapi`) and gatekit's own CRDs, [`BackendPolicy`]
//!   (per Service) and [`TrafficPolicy`] (per Gateway, listener, route or rule);
//! - [`manifest`]: loading `*.yaml`/`*.yml`/`*.json` files (multi-document YAML) into a
//!   typed [`ResourceSet`], with errors that name file, document, resource and field
//!   (an invalid policy value is such an error too);
//! - [`translate`](mod@translate): turning a [`ResourceSet`] into listeners, core
//!   [`Route`](gatekit_core::route::Route)s, upstream definitions with their endpoints, and
//!   the status conditions every resource would carry, to the Gateway API rules;
//! - [`features`]: the Gateway API conformance features gatekit supports, each with the
//!   tests that prove it (one list for GatewayClass `status.supportedFeatures`, `gatekit
//!   validate --features` and `docs/conformance.md`);
//! - [`status`]: gatekit's condition model (convertible to Kubernetes conditions);
//! - [`status_write`]: writing those conditions back to the objects' `/status`, by the
//!   elected leader only ([`StatusWriter`]);
//! - [`lease`]: per-replica membership Leases ([`Membership`]) and Lease-based leader
//!   election ([`LeaderElector`]);
//! - [`fleet`]: the live replicas of a fleet and their configuration drift
//!   ([`FleetView`]);
//! - [`cluster`] and [`provider`]: live resources from one or more API servers
//!   (kube-rs watchers, per-cluster stores, endpoint changes without retranslation,
//!   readiness after sync, stale clusters).
//!
//! What is not here: file watching and listeners (the binary's).
//!
//! Kubernetes types never leak into `gatekit-core`; they are translated here once.
//!
//! # Features
//!
//! - `client` (default): everything that talks to an API server — [`cluster`],
//!   [`provider`], [`lease`], [`fleet`], [`status_write`] — and the kube-rs client,
//!   runtime and rustls they need. Without it the crate is types, manifest loading and
//!   translation, with a much lighter build.
//! - `fuzzing`: the fuzz entry points (`fuzzing`).
//!
//! # Kubernetes versions
//!
//! `k8s-openapi` needs exactly one Kubernetes version feature (`v1_32` … `v1_36`,
//! `latest`) enabled in the final build. This library enables none: a binary or test
//! crate that depends on it must enable one (`k8s-openapi = { features = ["latest"] }`).
//!
//! # Example
//!
//! ```
//! use gatekit_k8s::{ResourceSet, translate::{translate, TranslateOptions}};
//!
//! let yaml = r#"
//! apiVersion: gateway.networking.k8s.io/v1
//! kind: Gateway
//! metadata: { name: gw }
//! spec:
//!   gatewayClassName: gatekit
//!   listeners: [{ name: http, port: 8080, protocol: HTTP }]
//! "#;
//! let (resources, warnings) = ResourceSet::from_documents([("gw.yaml", yaml)]).unwrap();
//! assert!(warnings.is_empty());
//! let translation = translate(&resources, &TranslateOptions::default());
//! assert_eq!(translation.listeners()[0].port(), 8080);
//! ```

#[cfg(feature = "client")]
mod backoff;
#[cfg(feature = "client")]
pub mod cluster;
pub mod duration;
mod error;
pub mod features;
#[cfg(feature = "client")]
pub mod fleet;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
#[cfg(feature = "client")]
pub mod lease;
pub mod manifest;
#[cfg(feature = "client")]
pub mod provider;
#[cfg(feature = "client")]
mod refs;
pub mod status;
#[cfg(feature = "client")]
pub mod status_write;
pub mod translate;
pub mod types;

#[cfg(feature = "client")]
pub use crate::cluster::{ClusterSpec, Role};
pub use crate::error::{Error, Result};
#[cfg(feature = "client")]
pub use crate::fleet::FleetView;
#[cfg(feature = "client")]
pub use crate::lease::{ElectionSpec, LeaderElector, MemberSpec, Membership};
pub use crate::manifest::{ManifestError, ResourceSet, Sources, Warning};
#[cfg(feature = "client")]
pub use crate::provider::{Provider, ProviderSettings};
#[cfg(feature = "client")]
pub use crate::status_write::StatusWriter;
pub use crate::translate::{TranslateOptions, Translation, Translator, translate};
pub use crate::types::btp::BackendTrafficPolicy;
pub use crate::types::ctp::ClientTrafficPolicy;
pub use crate::types::policy::BackendPolicy;
pub use crate::types::security::{SecurityOverride, SecurityPolicy};
pub use crate::types::traffic::TrafficPolicy;
