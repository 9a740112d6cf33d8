//! Rate limits as a tower layer (to be completed).

mod config;

pub use self::config::{KeyPart, Quota, RateLimitConfig, Unkeyed};
