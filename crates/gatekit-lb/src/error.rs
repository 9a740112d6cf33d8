//! gatekit-lb's own errors. Request-path failures are gatekit-core
//! [`Error`](gatekit_core::Error)s (`NoHealthyEndpoint` → 503); this module holds the
//! configuration errors.

/// A balancing algorithm name that [`Algorithm::from_str`](crate::Algorithm) does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown balancing algorithm `{name}`: expected one of round-robin, weighted-round-robin, \
     least-request, ip-hash, consistent-hash, peak-ewma, random"
)]
pub struct ParseAlgorithmError {
    name: String,
}

impl ParseAlgorithmError {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
        }
    }

    /// The name that was not recognised.
    pub fn name(&self) -> &str {
        &self.name
    }
}
