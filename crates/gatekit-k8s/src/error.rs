//! gatekit-k8s's errors, in one place: loading manifests ([`ManifestError`]), duration
//! strings ([`DurationError`]), and, with the `client` feature, building cluster clients
//! ([`ClusterError`]), starting the provider ([`ProviderError`]) and reading the fleet
//! ([`FleetError`]). [`Error`] wraps each for callers that want one type.
//!
//! Problems *inside* well-formed resources are not errors of this crate: translation
//! reports them as [`gatekit_core::ConfigError`]s and status conditions.

use std::fmt;

/// Any error of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Manifests could not be loaded (every error found).
    #[error("{} manifest error(s), first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Manifests(Vec<ManifestError>),
    /// A duration string was rejected.
    #[error(transparent)]
    Duration(#[from] DurationError),
    /// A cluster's client could not be built.
    #[cfg(feature = "client")]
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The provider could not start.
    #[cfg(feature = "client")]
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The fleet view could not be read.
    #[cfg(feature = "client")]
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

impl From<Vec<ManifestError>> for Error {
    fn from(errors: Vec<ManifestError>) -> Self {
        Self::Manifests(errors)
    }
}

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

// === manifests ===

/// Why a file or document could not be loaded.
///
/// Displays as `file (document N): Kind ns/name: field path: reason`, leaving out the
/// parts that are not known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    pub(crate) file: String,
    pub(crate) document: Option<usize>,
    pub(crate) kind: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) field: Option<String>,
    pub(crate) reason: String,
}

impl ManifestError {
    pub(crate) fn in_file(file: &str, reason: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            document: None,
            kind: None,
            namespace: None,
            name: None,
            field: None,
            reason: reason.into(),
        }
    }

    pub(crate) fn in_doc(file: &str, document: usize, reason: impl Into<String>) -> Self {
        Self {
            document: Some(document),
            ..Self::in_file(file, reason)
        }
    }

    pub(crate) fn with_field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        if !field.is_empty() && field != "." {
            self.field = Some(field);
        }
        self
    }

    /// The file (or source name).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The 0-based document index in the file, when the error is in one document.
    pub fn document(&self) -> Option<usize> {
        self.document
    }

    /// The resource's kind, when known.
    pub fn kind(&self) -> Option<&str> {
        self.kind.as_deref()
    }

    /// The resource's namespace, when known.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The resource's name, when known.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The field path in the document (`spec.listeners[0].port`), when known.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// What is wrong.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(d) = self.document {
            write!(f, " (document {d})")?;
        }
        if let Some(kind) = &self.kind {
            write!(f, ": {kind}")?;
            match (&self.namespace, &self.name) {
                (Some(ns), Some(n)) => write!(f, " {ns}/{n}")?,
                (None, Some(n)) => write!(f, " {n}")?,
                _ => {}
            }
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for ManifestError {}

// === durations ===

/// Why a duration string was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (expected e.g. \"5s\", \"100ms\", \"1m30s\")")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl DurationError {
    pub(crate) fn new(input: &str, reason: &'static str) -> Self {
        Self {
            input: input.to_owned(),
            reason,
        }
    }

    /// The string that was rejected.
    pub fn input(&self) -> &str {
        &self.input
    }
}

// === clusters (client feature) ===

#[cfg(feature = "client")]
/// Why a cluster's client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cluster {cluster}: {reason}")]
pub struct ClusterError {
    cluster: String,
    reason: String,
}

#[cfg(feature = "client")]
impl ClusterError {
    pub(crate) fn new(cluster: &str, reason: impl Into<String>) -> Self {
        Self {
            cluster: cluster.to_owned(),
            reason: reason.into(),
        }
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }
}

#[cfg(feature = "client")]
/// Why the provider could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The settings are inconsistent.
    #[error("invalid Kubernetes settings: {0}")]
    Settings(String),
    /// A cluster's client could not be built.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

#[cfg(feature = "client")]
/// Loading the fleet view failed.
#[derive(Debug, thiserror::Error)]
#[error("listing the Leases of fleet {fleet:?} in namespace {namespace:?}")]
pub struct FleetError {
    pub(crate) fleet: String,
    pub(crate) namespace: String,
    #[source]
    pub(crate) source: kube::Error,
}
