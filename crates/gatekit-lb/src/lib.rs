//! gatekit-lb: endpoint sets, balancers, health checking and outlier detection.
//!
//! Turns a stream of endpoint changes ([`gatekit_core::Change`]) into a tower service that
//! picks one healthy endpoint per request. No HTTP routing here.

mod health_state;

pub use crate::health_state::EndpointHealth;
