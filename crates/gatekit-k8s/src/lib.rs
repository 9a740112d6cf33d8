//! gatekit-k8s: Kubernetes resources, their translation into gatekit-core's route model,
//! and the providers that feed them (API servers, or a directory of manifests).
//!
//! Nothing is here yet: the standalone and Kubernetes provider work fills this crate in.
//! Kubernetes types never leak into `gatekit-core`; they are translated here once.
