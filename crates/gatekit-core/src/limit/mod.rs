//! Per-rule request limits (load shedding, body size) as tower layers (to be completed).

mod config;

pub use self::config::RequestLimits;
