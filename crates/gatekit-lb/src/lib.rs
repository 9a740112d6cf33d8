//! gatekit-lb: endpoint sets, balancers, health checking and outlier detection.
//!
//! Turns a stream of endpoint changes ([`gatekit_core::Change`]) into a tower service that
//! picks one healthy endpoint per request. No HTTP routing here.

pub mod health;
mod health_state;
mod observe;
pub mod outlier;

pub use crate::health::{HealthChecker, HealthEvent, HealthEventKind};
pub use crate::health_state::EndpointHealth;
pub use crate::observe::{Outcome, OutcomeObserver};
pub use crate::outlier::OutlierDetector;
