//! Circuit breakers as a tower layer (to be completed).

mod config;

pub use self::config::CircuitBreakerConfig;
