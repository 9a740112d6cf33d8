//! API keys: see the crate docs.
