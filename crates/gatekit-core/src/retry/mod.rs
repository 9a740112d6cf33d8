//! Retries as a tower layer (to be completed: see the issue brief).

mod attempt;
mod config;

pub use self::attempt::{Attempt, TriedEndpoints};
pub use self::config::{Backoff, RetryBudgetConfig, RetryOn, RetryPolicy};
